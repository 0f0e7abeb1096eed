// Package interop holds Embark's interoperability tests: the real server, in
// process, on loopback listeners bound to port 0, driven by independent
// peers that share no code with Embark.
//
// # Peers
//
// The EST-coaps tests (RFC 9148) use libcoap's command-line client from
// Debian's libcoap3-bin package, in both of its builds:
//
//   - coap-client-gnutls sends its whole certificate file (IDevID and
//     manufacturer intermediate) in the DTLS/TLS handshake;
//   - coap-client-openssl sends only its leaf certificate, so Embark must
//     complete the IDevID chain from the intermediates the operator
//     registered for the manufacturer.
//
// CSRs and keys come from the openssl command, never from Embark's code. The
// client always verifies the server against Embark's root (-C); the option
// that disables that check (-n) is never used.
//
// # Running
//
// The tests skip, with a message, when a peer is not on PATH; set
// EMBARK_INTEROP_REQUIRED=1 to make a missing peer a failure instead. On
// Debian: apt-get install libcoap3-bin openssl. Then:
//
//	go test -count=1 -v ./test/interop/
//
// Each client invocation runs under a 30 s deadline. libcoap's exit status
// says little (it is 0 after a failed handshake or an error response), so
// the tests read the response code and Content-Format from the PDU trace
// that -v 6 prints, the payload from the file written by -o, the diagnostic
// payload of error responses from standard error, and check the registry
// on the server side.
package interop
