// Package estcoap serves EST over CoAP (EST-coaps, RFC 9148) for the
// onboarding core: over UDP with DTLS 1.2 and over TCP with TLS (RFC 8323,
// ALPN "coap").
//
// # Resources
//
// The mandatory root /.well-known/est (RFC 9148 §4.1) and the short aliases
// under /est, both listed in /.well-known/core with rt="ace.est.*":
//
//	crts  GET   CA certificates: 281 (PKCS#7 certs-only: intermediate, root; default) or 287 (the root)
//	sen   POST  simple enroll, CSR as 286; client certificate: the IDevID
//	sren  POST  simple re-enroll, CSR as 286; client certificate: the current LDevID
//	att   GET   CSR attributes, 285
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
// The adapter holds no business logic: it maps wire formats and the core's
// typed errors to CoAP.
package estcoap
