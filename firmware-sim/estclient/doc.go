// Package estclient is a client for EST over secure CoAP (EST-coaps,
// RFC 9148), the device side of Embark's enrollment protocol.
//
// # Basics
//
// [Dial] opens one secure session to a target and completes a full handshake
// before it returns:
//
//   - coaps://host[:port] is CoAP over DTLS 1.2 over UDP (RFC 7252);
//   - coaps+tcp://host[:port] is CoAP over TLS 1.3 over TCP (RFC 8323, ALPN "coap").
//
// The default port is 5684 for both. The server is always authenticated:
// its certificate must chain to [Config].Roots and name [Config].ServerName
// (by default the target's host). There is no way to switch that off.
// The client authenticates with [Config].Certificate: the IDevID chain for
// [Client.Enroll], the current LDevID for [Client.Reenroll].
//
// Every EST resource is one method:
//
//	/.well-known/est/crts  GET  -> [Client.CACerts] (281), [Client.RootCert] (287)
//	/.well-known/est/sen   POST -> [Client.Enroll]
//	/.well-known/est/sren  POST -> [Client.Reenroll]
//	/.well-known/est/att   GET  -> [Client.CSRAttrs]
//	/.well-known/core      GET  -> [Client.Discover]
//
// # Errors
//
// A CoAP error answer becomes a [*StatusError] carrying the response code,
// the reason code and message of the server's diagnostic payload
// ("reason_code: message") and, for 5.03 Service Unavailable, the Max-Age
// after which the device should resend the same request
// ([StatusError.Retryable]). A failed handshake wraps [ErrHandshake]; an
// answer that cannot be understood wraps [ErrResponse].
//
// # Caveats
//
// A [Client] holds one session. Session resumption is never used, so every
// [Dial] costs a full handshake, as it does for a device that wakes up.
package estclient
