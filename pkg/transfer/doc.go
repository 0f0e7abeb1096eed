// Package transfer moves the ownership of devices between operators
// (resale), in the manner of an FDO ownership voucher extension: the current
// owner signs a transfer record naming the new owner, and the new owner's
// Embark checks it against what its registry knows before it lets the
// device onboard.
//
// # Records
//
// A [Record] says: device (manufacturer, serial, IDevID key fingerprint),
// transfer number seq (1 for the device's first resale, one more for each
// further one), from (the current owner's name and full hybrid public key),
// to (the new owner's name and the KeyID of its owner key), and when. It is
// the JSON payload of a DSSE envelope (payload type [PayloadType], see
// package manifest) signed with the from owner's hybrid key (package
// hybridsig: ECDSA P-256 and ML-DSA-65, both must verify). The owner key is
// the one `embark init` puts in the data directory (package owner).
//
// A device can change hands several times, A to B to C: each record is
// signed by the owner the previous one named. A transfer file holds one
// envelope, or a chain of them as a JSON array, oldest first ([ParseFile],
// [EncodeFile]); a seller passes on the whole chain it holds, so that a
// buyer whose registry knows only the manufacturer's manifest (owner A)
// can follow every hop.
//
// # Seller
//
// [Create] runs in the seller's Embark. The device must belong to the
// seller in the registry: its provenance names the seller's owner key, or,
// when the manufacturer's manifest gave only an owner name, the seller's
// name (the record then carries the seller's current key, which the buyer
// must trust; see below). In one transaction Create revokes the device's
// usable certificates (reason "transferred to <buyer>"; publishing them in
// a CRL is the lifecycle's job), moves the device to device.Transferred (the
// onboarding core refuses it from then on with reason wrong_owner), records
// the buyer as owner with Provenance.Transfers = seq, stores the record
// (store collection [RecordKind], key [RecordKey]) and appends an audit
// entry. The signature is made before the transaction, never inside it.
//
// # Buyer
//
// [Accept] runs in the buyer's Embark, which must already hold the device:
// its manufacturer trusted and its manifest imported (the device arrives
// there owned by someone else, and enrollments are refused with
// wrong_owner). For each record, oldest first, Accept checks:
//
//   - the envelope is strict JSON of the right payload type, the record is
//     valid, and it is signed by the key it names as from.key, both halves
//     of the hybrid signature verifying ([ErrMalformed], [ErrSignature]);
//   - the last record is addressed to this owner: its to.key_id is the
//     buyer's KeyID ([ErrNotForUs]); earlier records of a chain name the
//     owners in between;
//   - the device is in the registry ([ErrUnknownDevice]) with the same
//     IDevID key ([ErrMismatch]);
//   - seq is the registry's Provenance.Transfers + 1: a record accepted
//     before, or older than the registry's latest, is refused as replayed
//     ([ErrReplayed]); a leading part of a chain that the registry holds
//     already, byte for byte the same payloads, is skipped;
//   - the signer owns the device: from.key's KeyID equals the registry's
//     Provenance.OwnerKey, or, if the registry names the owner by name only,
//     from.name equals Provenance.Owner ([ErrNotOwner]).
//
// Then the buyer becomes the owner (Owner and OwnerKey from the last
// record's to, Transfers = its seq), the device becomes device.Expected so
// that it can enroll after a factory reset (device.EvAcquire), the records
// are stored and an audit entry is appended, all in one transaction.
//
// # The name-only case
//
// When a manifest names the owner by name only (no owner_key), the first
// record's signer is trusted on the manufacturer's assertion of the owner's
// name plus a valid signature by the key the record itself carries: anyone
// who knows the owner's name can sign such a record. Manufacturers should
// write owner_key; a buyer who receives a first transfer of such a device
// should confirm the seller's key out of band and pass it with
// [WithSellerKey] (`embark provenance transfer import --from-key`), which
// makes Accept refuse a record signed by any other key. Result.NameOnly and
// the audit entry say when the name-only rule decided.
//
// Once a device has been transferred, later imports of its manufacturer's
// manifest keep the owner set by the transfers (package provenance).
package transfer
