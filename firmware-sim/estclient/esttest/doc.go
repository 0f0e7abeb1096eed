// Package esttest provides a small EST-coaps server and a throw-away PKI
// for tests of EST-coaps clients.
//
// The server speaks the wire protocol (RFC 9148 over DTLS or TLS) with
// just enough behaviour to exercise a client: it distributes the CA
// certificates, enrolls CSRs idempotently (a resent CSR key gets the
// certificate already issued), can hold the first requests of every device
// with 5.03 and Max-Age, and answers magic subject common names ([CNHeld],
// [CNGhost], ...) with error answers. It is not Embark's server and makes
// no policy decisions.
//
// It also serves Embark's status resource (/embark/status: GET, observable,
// and POST {"applied": n}) for LDevIDs of its intermediate, with a document
// per device subject common name that a test changes with
// [Server.SetStatus] and ends with [Server.Revoke].
package esttest
