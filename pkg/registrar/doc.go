// Package registrar makes Embark a BRSKI registrar (RFC 8995, constrained
// BRSKI): it obtains, for a device that cannot yet trust Embark, a voucher
// from the device's manufacturer (its MASA) that pins Embark's CA.
//
// # Flow
//
// A transport adapter (CoAP /.well-known/brski/rv, the MQTT "voucher" op)
// hands [Registrar.RequestVoucher] the device's signed pledge request and
// the certificate chain of its session — over plain CoAP and MQTT, the
// x5chain of the signed request itself. The registrar
//
//   - checks that that IDevID signed the request and chains to a trusted
//     manufacturer (the onboarding core's Identify), and, if the request
//     names a server key, that it is one of this registrar's (proximity;
//     a device asking over plain CoAP names none, see package voucher);
//   - wraps the request in a registrar request signed with its registrar
//     certificate (id-kp-cmcRA, issued by Embark's CA and kept in
//     DATA/registrar/) and sends it to the MASA configured for the
//     manufacturer ([Registrar.SetMASA]) over TLS 1.3 with X25519MLKEM768
//     only, authenticated by the same certificate; the MASA's certificate
//     must chain to the manufacturer's trusted roots (or to a CA given with
//     the setting) and name the URL's host;
//   - checks the answer: the hybrid countersignature with one of the
//     manufacturer's trusted manifest keys, and that the voucher is for
//     this device and nonce and pins Embark's root;
//   - records the outcome in the audit log and returns the voucher.
//
// Nothing is kept that a later request could reuse: every nonced voucher
// comes fresh from the MASA for the nonce the device just sent. When the
// MASA cannot be reached, or no MASA is configured, the device is told to
// come back later (reason masa_unavailable or no_masa, with a retry
// delay) and nothing is written, unless the operator prefetched a
// nonceless voucher for the device ([Registrar.Prefetch], `embark voucher
// prefetch`) into the voucher directory, which is then served: nonceless
// vouchers are bounded in time by the MASA and accepted only by devices
// that have a clock.
//
// # MASA settings
//
// `embark manufacturer masa NAME URL` sets the MASA of a trusted
// manufacturer. Setting it registers Embark's domain with the MASA: a
// [voucher.Registration] of Embark's root, signed with the owner key
// (DATA/owner.key), sent over a connection authenticated by the registrar
// certificate, which proves control of the root. The setting is stored in
// the registry only once the MASA accepted the registration.
//
// # Refusals
//
// Errors are *onboard.Error values whose reasons the transports show the
// device: the core's reasons (untrusted_chain, wrong_credential, ...), and
// [ReasonNoMASA], [ReasonMASAUnavailable] (both "not yet": RetryAfter is
// set), [ReasonVoucherRefused] (the MASA said no; a [*MASARefusal] in the
// error chain carries its reason), [ReasonVoucherUntrusted] (the MASA's
// answer did not check out) and [ReasonProximity].
package registrar
