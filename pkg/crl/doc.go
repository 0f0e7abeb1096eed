// Package crl publishes the certificate revocation list of Embark's issuing
// CA.
//
// # Basics
//
// Revocations are kept in the registry as opaque records of kind
// [KindRevoked], keyed by the certificate serial in lower-case hex. The code
// that revokes a certificate calls [RecordRevocation] inside its own
// transaction, then [Publisher.Trigger] once the transaction has committed.
//
// A [Publisher] builds the CRL from those records: [Publisher.Regenerate]
// reads every revocation, drops (and deletes) the ones whose certificate has
// expired, takes the next CRL number, persisted under [KindMeta]/"number" so
// that it grows across restarts, and signs the list with the intermediate
// through [pki.CA.CreateCRL]. [Publisher.Current] returns the cached CRL and
// regenerates it when it is missing or has less than the refresh margin left
// before its nextUpdate. [Publisher.Run] keeps it fresh in the background and
// regenerates soon after each Trigger; triggers that arrive while a
// regeneration is pending are coalesced.
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
