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
// # Zero touch (vouchers)
//
// A factory-fresh device does not know its owner's root. [ZeroTouch] runs
// constrained BRSKI without ever opening an unverified session: the voucher
// request, signed with the IDevID, goes over plain CoAP to the registrar's
// BRSKI listener ([RequestVoucher], coap://host[:port], default port 5683,
// /.well-known/brski/rv); the device verifies the voucher against the
// anchors of its firmware (package voucher), then [Dial]s with the domain
// certificate the voucher pins as its only root, so a server the voucher
// does not vouch for fails the handshake. [Client.ReportVoucherStatus] and
// [Client.ReportEnrollStatus] post the status telemetry (/vs, /es) on that
// verified session; [Client.RequestVoucher] asks rv on one.
//
// Every EST resource is one method:
//
//	/.well-known/est/crts  GET  -> [Client.CACerts] (281), [Client.RootCert] (287)
//	/.well-known/est/sen   POST -> [Client.Enroll]
//	/.well-known/est/sren  POST -> [Client.Reenroll]
//	/.well-known/est/att   GET  -> [Client.CSRAttrs]
//	/.well-known/core      GET  -> [Client.Discover]
//
// Embark's status resource, with the session authenticated by the LDevID:
//
//	/embark/status  GET                -> [Client.Status]
//	/embark/status  GET, Observe=0     -> [Client.ObserveStatus] (RFC 7641)
//	/embark/status  POST {"applied"}   -> [Client.ReportApplied]
//
// An observation delivers the current document, then every newer
// generation, on [StatusObservation.Updates]; it ends (see
// [StatusObservation.Err]) with the session, a cancel, or a final
// notification from the server, such as 4.03 "revoked" ([IsRevoked]).
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
