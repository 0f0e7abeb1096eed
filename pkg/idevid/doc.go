// Package idevid verifies factory device identities (IEEE 802.1AR IDevIDs)
// against the manufacturers an operator trusts.
//
// A [Verifier] is built from the trusted manufacturers' roots and
// intermediates. It verifies each manufacturer CA certificate once with
// crypto/x509 and remembers the result, so that verifying a device costs one
// signature check (the leaf against its already verified issuer) instead of
// one per chain link: the manufacturer's intermediate is the same for
// thousands of devices. A CA certificate with name constraints is never
// taken from the cache: such chains go through x509.Verify in full.
//
// Clients that send only their leaf certificate are accepted when the
// manufacturer registered its intermediates with its trust bundle.
//
// IDevIDs may carry notAfter 99991231235959Z ("no well-defined expiration",
// RFC 5280 §4.1.2.5, 802.1AR §8.5): that is a valid, far-future date here.
// Other expired chains yield [ErrExpired]; the caller decides (by default
// Embark refuses them).
package idevid
