// Package provenance brings what the supply chain knows about devices into
// the registry: trusted manufacturers (their IDevID CAs and manifest signing
// keys) and their signed manifests.
//
// A manifest is imported atomically: it is verified (both halves of the
// hybrid signature, by a key of the manufacturer it names), checked whole,
// and written in one transaction, or refused with nothing changed. Devices
// exist in the registry only because a verified manifest listed them.
package provenance
