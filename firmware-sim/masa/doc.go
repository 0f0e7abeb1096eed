// Package masa is the simulated manufacturer's voucher service (MASA,
// RFC 8995 §5.5) of firmware-sim: it vouches to a device that the network
// it is joining belongs to its owner.
//
// # What it knows
//
// The MASA runs on a factory output directory (package factory): its
// sales records are the signed manifest's owner and owner_key fields
// (which owner bought which serials), its voucher-signing key is the one
// whose certificate the factory built into every device's firmware, and
// its TLS certificate is issued at start by the manufacturer's root, which
// registrars trust already (the root anchors the IDevIDs in the trust
// bundle they imported).
//
// # Owners register their domain
//
// An owner registers the CA its devices are to pin by posting a
// [voucher.Registration] signed with its hybrid owner key (Embark's
// owner.key) to /.well-known/brski/register, over a connection
// authenticated by a registrar certificate of that CA: the signature proves
// the key, the connection proves control of the CA, so nobody registers
// another owner's CA as its own (a CA belongs to one key). Any key may
// register — a
// registration grants nothing by itself; vouchers go only to the key that
// bought the device: the sales record's owner_key, or, for a record that
// names its owner without a key, the key configured for that name
// ([Options].OwnerKeys). A newer registration of the same key replaces
// the older one; an older one is refused. Registrations are kept in
// masa-registrations.json in the factory directory.
//
// # Vouchers
//
// A registrar posts a [voucher.RegistrarRequest] to
// /.well-known/brski/requestvoucher over TLS 1.3 with X25519MLKEM768 only,
// presenting its registrar certificate (id-kp-cmcRA), which must chain to
// a registered domain CA and must be the certificate that signed the
// request. The MASA checks the device's pledge request inside: signed by
// an IDevID of this manufacturer whose key the sales record names, for the
// serial the registrar asks about, through the registrar the device saw
// (its server certificate chains to the same domain CA). It then signs a
// voucher (assertion "verified") pinning the owner's domain CA, echoing
// the device's nonce, countersigned with the manufacturer's hybrid manifest
// key. A request without a pledge request asks for a nonceless voucher,
// whose expiry is bounded by [Options].MaxNonceless.
//
// Refusals are HTTP 4xx with a JSON body {"reason": ..., "message": ...}:
//
//	unauthenticated_registrar  403  no registrar certificate of a registered domain
//	registrar_mismatch         403  the request is signed by another certificate than the TLS client's
//	bad_request, bad_signature 400  the request does not decode or verify
//	unknown_device             404  no sales record for the serial
//	untrusted_idevid           403  the pledge request is not signed by this manufacturer's IDevID
//	clone_suspected            403  the IDevID's key is not the one sold under that serial
//	proximity_mismatch         403  the device saw another registrar
//	no_owner_key               403  the sales record names no key and none is configured for its owner
//	wrong_owner                403  the device was sold to another owner
//	stale_registration         409  a registration older than the one kept
//	domain_taken               409  the domain CA is registered by another owner key
//
// Every voucher and every refusal is logged as a JSON line (default
// masa-log.jsonl in the factory directory), with the registrar, the owner
// key, the nonce, the voucher's SHA-256 and the TLS group of the
// connection; every answer carries the negotiated TLS version and group
// in the Embark-TLS-Version and Embark-TLS-Group headers.
package masa
