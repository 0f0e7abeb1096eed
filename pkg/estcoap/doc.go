// Package estcoap serves EST over CoAP (EST-coaps, RFC 9148) for the
// onboarding core: over UDP with DTLS 1.2 and over TCP with TLS (RFC 8323,
// ALPN "coap").
//
// # Resources
//
// The mandatory root /.well-known/est (RFC 9148 §4.1) and the short aliases
// under /est, both listed in /.well-known/core with rt="ace.est.*":
//
//	crts  GET   CA certificates: 281 (PKCS#7 certs-only; default) or 287 (the root)
//	sen   POST  simple enroll, CSR as 286; client certificate: the IDevID
//	sren  POST  simple re-enroll, CSR as 286; client certificate: the current LDevID
//	att   GET   CSR attributes, 285
//
// crts in 281 lists every intermediate that is not retired (during a CA
// rollover, the active one first), then the roots, the active root last;
// 287 is the active root. /embark/crl (rt="embark.crl", ct=42) serves a
// CRL per intermediate: a device asks for its own with ?aki=HEX, the
// authority key identifier of its certificate ([Config].CRLOf); without it
// the active intermediate's.
//
// With a registrar configured, the constrained BRSKI resources
// /.well-known/brski/rv (voucher request, 836), vs and es (status
// telemetry, 60) are served too (brski.go).
//
// A successful POST answers 2.04 Changed with 281 (default) or 287 (Accept).
// Refusals carry a text/plain diagnostic payload "reason: message" with the
// core's reason code. "Not yet" (held for approval, overloaded) is 5.03
// Service Unavailable with Max-Age: the device sends the same request again
// after that many seconds (RFC 9148 §4.7).
//
// # Limits
//
// Block-wise transfer (RFC 7959) is supported both ways; the server refuses
// with 4.13 Request Entity Too Large (and a Size1 option) any request whose
// body, whole or reassembled, would exceed the configured limit, before it
// buffers it.
//
// # Status
//
// With [Config].Desired, /embark/status (rt="embark.status", ct=60, obs)
// serves a device its desired state (package desired), authenticated by
// the session's LDevID:
//
//	GET   the [StatusDocument] (CBOR, 60); with Observe=0 the device is
//	      registered (RFC 7641) and notified of every new generation
//	      (rotate, zone, revoked), Observe=1 deregisters
//	POST  a [StatusReport] (CBOR, 60): the generation the device applied;
//	      2.04 with the document as now recorded
//
// Only the newest generation waits for a slow observer. An observation
// ends with deregistration, the session's end, a notification the device
// does not acknowledge, or revocation: the sessions of a revoked or
// superseded certificate get a final notification with the refusal (such
// as 4.03 "revoked: ..."), then are dropped. [MaxObserversPerConn] and
// [MaxObservers] bound the observations; a registration beyond them is
// answered without Observe (not registered).
//
// The adapter holds no business logic: it maps wire formats and the core's
// typed errors to CoAP.
package estcoap
