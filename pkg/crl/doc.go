// Package crl publishes the certificate revocation lists of Embark's issuing
// CA: one CRL per intermediate that is not retired (after a CA rollover,
// the active intermediate and the previous ones still in their overlap).
//
// # Basics
//
// Revocations are kept in the registry as opaque records of kind
// [KindRevoked], keyed by the certificate serial in lower-case hex. The code
// that revokes a certificate calls [RecordRevocation] inside its own
// transaction, then [Publisher.Trigger] once the transaction has committed.
//
// A [Publisher] builds the CRLs from those records: [Publisher.Regenerate]
// reads every revocation, drops (and deletes) the ones whose certificate has
// expired, and for each intermediate takes its next CRL number, persisted
// under [KindMeta] so that it grows across restarts ("number" for the
// first generation, "number/ID" for the others), and signs the entries of
// the certificates it issued through [pki.CA.CreateCRLFor]. A revocation
// record names its issuer (the authority key identifier of the revoked
// certificate, read from the registry by [RecordRevocation]); one that
// names none is listed on every CRL. [Publisher.CurrentFor] returns the
// cached CRL of one intermediate, chosen by its key id, and
// [Publisher.Current] that of the active intermediate; both regenerate
// when the CRL is missing or has less than the refresh margin left before
// its nextUpdate. [Publisher.Run] keeps them fresh in the background and
// regenerates soon after each Trigger; triggers that arrive while a
// regeneration is pending are coalesced.
//
// A device finds its CRL by the authority key identifier of its own
// certificate: Embark's transports pass it as the "aki" query parameter
// (CoAP /embark/crl?aki=HEX, HTTP GET /v1/crl?aki=HEX); without it they
// serve the active intermediate's CRL.
//
// # Caveats
//
// The CRL number is incremented and stored before the CRL is signed, in a
// transaction of its own, so a failed signature leaves a gap in the numbers
// but never reuses one. The revocations are read in a read-only transaction
// before that: a revocation committed meanwhile is listed by the next
// regeneration, which its Trigger causes.
//
// The first revocation of a serial stands: recording it again changes
// nothing.
package crl
