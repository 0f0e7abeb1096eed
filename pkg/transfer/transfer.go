package transfer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/crl"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
)

// maxAttempts bounds how often Create reads, signs and commits again when
// the device changed in between.
const maxAttempts = 3

// Option changes how [Create] and [Accept] work.
type Option func(*options) error

type options struct {
	actor     string
	sellerKey string
}

// WithActor names who asked, for the audit log (default "operator").
func WithActor(actor string) Option {
	return func(o *options) error {
		if actor == "" {
			return fmt.Errorf("%w: empty actor", ErrInvalid)
		}
		o.actor = actor
		return nil
	}
}

// WithSellerKey makes [Accept] require that the first record it applies be
// signed by the key with this KeyID: the seller's owner key, confirmed out
// of band. It closes the gap of manifests that name the owner by name only
// (see the package documentation).
func WithSellerKey(keyID string) Option {
	return func(o *options) error {
		if !manifest.IsSHA256Hex(keyID) {
			return fmt.Errorf("%w: seller key %q: want 64 lower-case hexadecimal digits", ErrInvalid, keyID)
		}
		o.sellerKey = keyID
		return nil
	}
}

func apply(opts []Option) (options, error) {
	o := options{actor: "operator"}
	for _, f := range opts {
		if err := f(&o); err != nil {
			return o, err
		}
	}
	return o, nil
}

// Result describes a transfer that was created or accepted.
type Result struct {
	DeviceID string `json:"device_id"`
	// Seq is the number of the (last) transfer.
	Seq uint32 `json:"seq"`
	// From and FromKey name the owner that gave the device away (in the
	// last record), To and ToKey the new owner.
	From    string `json:"from"`
	FromKey string `json:"from_key"`
	To      string `json:"to"`
	ToKey   string `json:"to_key"`
	// Applied is how many records Accept applied (earlier records of a
	// chain that the registry holds already are skipped).
	Applied int `json:"applied,omitempty"`
	// NameOnly is set when Accept trusted the first record's signer
	// because the registry named the owner by name only.
	NameOnly bool `json:"name_only,omitempty"`
	// Revoked lists the certificates Create revoked (serials).
	Revoked []string `json:"revoked,omitempty"`
	// State is the device's state afterwards.
	State device.State `json:"state"`
}

// Export is what [Create] made.
type Export struct {
	Result
	// Envelope is the new signed record.
	Envelope []byte `json:"-"`
	// Chain is every record of the device this registry holds, oldest
	// first, ending with Envelope: what a buyer whose registry knows only
	// the manufacturer's manifest needs.
	Chain [][]byte `json:"-"`
}

// File returns the transfer file to give the buyer: the chain (see
// [EncodeFile]).
func (e *Export) File() ([]byte, error) { return EncodeFile(e.Chain) }

// RecordKey returns the store key of a device's record number seq. Keys of
// one device sort in seq order.
func RecordKey(deviceID string, seq uint32) string {
	return fmt.Sprintf("%s/%010d", deviceID, seq)
}

// Create transfers a device the seller owns to the owner named toName whose
// owner key has the KeyID toKeyID. In one transaction it revokes the
// device's usable certificates, moves the device to [device.Transferred],
// records the buyer as its owner in the registry, stores the signed record
// and appends an audit entry. Nothing changes on error.
func Create(ctx context.Context, st store.Store, seller *owner.Identity, deviceID, toName, toKeyID string, now time.Time, opts ...Option) (*Export, error) {
	o, err := apply(opts)
	if err != nil {
		return nil, err
	}
	if seller == nil || seller.Key == nil {
		return nil, fmt.Errorf("%w: no owner key to sign with", ErrInvalid)
	}
	id, err := device.NormalizeID(deviceID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if reason := checkName(toName); reason != "" {
		return nil, fmt.Errorf("%w: buyer name: %s", ErrInvalid, reason)
	}
	if !manifest.IsSHA256Hex(toKeyID) {
		return nil, fmt.Errorf("%w: buyer key %q: want 64 lower-case hexadecimal digits", ErrInvalid, toKeyID)
	}
	if toKeyID == seller.KeyID() {
		return nil, fmt.Errorf("%w: the buyer's key is this owner's own key", ErrInvalid)
	}
	for attempt := 0; ; attempt++ {
		exp, err := create(ctx, st, seller, id, toName, toKeyID, now, o)
		if errors.Is(err, errChanged) && attempt+1 < maxAttempts {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("create %s: %w", id, err)
		}
		return exp, nil
	}
}

// errChanged: the device changed between reading it and committing.
var errChanged = fmt.Errorf("device changed meanwhile: %w", store.ErrConflict)

func create(ctx context.Context, st store.Store, seller *owner.Identity, id, toName, toKeyID string, now time.Time, o options) (*Export, error) {
	var d device.Device
	var chain [][]byte
	err := st.View(ctx, func(r store.Reader) error {
		var err error
		if d, err = r.Device(id); err != nil {
			return err
		}
		chain, err = storedChain(r, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	if err != nil {
		return nil, err
	}
	p := d.Provenance
	if !seller.Owns(p.Owner, p.OwnerKey) {
		return nil, fmt.Errorf("%w: the registry names owner %s", ErrNotOwner, ownerString(p.Owner, p.OwnerKey))
	}
	if _, err := device.Next(d.State, device.EvTransfer); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrState, err)
	}
	if p.Transfers == math.MaxUint32 {
		return nil, fmt.Errorf("%w: transfer counter exhausted", ErrInvalid)
	}
	if len(chain) != int(p.Transfers) || len(chain) >= MaxChain {
		return nil, fmt.Errorf("%w: the registry holds %d of the device's %d earlier transfer records (at most %d in a file)",
			ErrMismatch, len(chain), p.Transfers, MaxChain-1)
	}
	rec := &Record{
		Manufacturer: p.Manufacturer, Serial: p.Serial, IDevIDKeySHA256: p.IDevIDKeySHA256,
		Seq:     p.Transfers + 1,
		From:    From{Name: seller.Name, Key: seller.Key.Public().Bytes()},
		To:      To{Name: toName, KeyID: toKeyID},
		Created: now.UTC(),
	}
	// Sign outside the transaction: Update may run its function again.
	env, err := Sign(rec, seller.Key)
	if err != nil {
		return nil, err
	}
	exp := &Export{Envelope: env, Chain: append(chain, env)}
	err = st.Update(ctx, func(tx store.Tx) error {
		cur, err := tx.Device(id)
		if err != nil {
			return err
		}
		if cur.Revision != d.Revision {
			return errChanged
		}
		certs, err := tx.CertificatesOf(id)
		if err != nil {
			return err
		}
		exp.Revoked = nil
		for _, c := range certs {
			if !c.Status.Usable() {
				continue
			}
			c.Status, c.StatusAt, c.Reason = device.CertRevoked, now, "transferred to "+toName
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
			if n, ok := new(big.Int).SetString(c.Serial, 16); ok {
				if err := crl.RecordRevocation(tx, crl.SerialHex(n), c.NotAfter, now, crl.ReasonAffiliationChanged); err != nil {
					return err
				}
			}
			exp.Revoked = append(exp.Revoked, c.Serial)
		}
		next, err := device.Next(cur.State, device.EvTransfer)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrState, err)
		}
		cur.State, cur.Zone, cur.Cause, cur.UpdatedAt = next, "", o.actor, now
		cur.Reason = fmt.Sprintf("transferred to %s (transfer %d)", ownerString(toName, toKeyID), rec.Seq)
		cur.Provenance.Owner, cur.Provenance.OwnerKey, cur.Provenance.Transfers = toName, toKeyID, rec.Seq
		if err := tx.PutDevice(&cur); err != nil {
			return err
		}
		if err := tx.PutRecord(RecordKind, RecordKey(id, rec.Seq), env); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: o.actor, Action: "transfer-out", DeviceID: id, Outcome: "ok",
			Detail: fmt.Sprintf("transfer %d to %s, signed by %s; %d certificates revoked",
				rec.Seq, ownerString(toName, toKeyID), seller.KeyID(), len(exp.Revoked))})
		return err
	})
	if err != nil {
		return nil, err
	}
	exp.Result = Result{DeviceID: id, Seq: rec.Seq, From: seller.Name, FromKey: seller.KeyID(),
		To: toName, ToKey: toKeyID, Revoked: exp.Revoked, State: device.Transferred}
	return exp, nil
}

// Accept verifies a transfer file (one record or a chain, see [ParseFile])
// for a device of the buyer's registry and, if every check passes, makes
// the buyer its owner: in one transaction the records are applied in
// order, stored, the device becomes [device.Expected] (so that it can
// enroll after a factory reset) and an audit entry is appended. Nothing
// changes on error. See the package documentation for the checks.
func Accept(ctx context.Context, st store.Store, buyer *owner.Identity, file []byte, now time.Time, opts ...Option) (Result, error) {
	o, err := apply(opts)
	if err != nil {
		return Result{}, err
	}
	if buyer == nil || buyer.Key == nil {
		return Result{}, fmt.Errorf("%w: no owner key", ErrInvalid)
	}
	envs, err := ParseFile(file)
	if err != nil {
		return Result{}, err
	}
	recs := make([]*Opened, len(envs))
	for i, env := range envs {
		if recs[i], err = Open(env); err != nil {
			if len(envs) > 1 {
				err = fmt.Errorf("record %d of %d: %w", i+1, len(envs), err)
			}
			return Result{}, err
		}
	}
	first, last := recs[0], recs[len(recs)-1]
	id := first.DeviceID()
	for i, r := range recs[1:] {
		prev := recs[i]
		switch {
		case r.DeviceID() != id || r.IDevIDKeySHA256 != first.IDevIDKeySHA256:
			return Result{}, fmt.Errorf("%w: the chain's records are for different devices", ErrMismatch)
		case r.Seq != prev.Seq+1:
			return Result{}, fmt.Errorf("%w: record %d follows record %d", ErrMismatch, r.Seq, prev.Seq)
		}
	}
	if last.To.KeyID != buyer.KeyID() {
		return Result{}, fmt.Errorf("%w: transfer %d of %s is to %s, this owner's key is %s",
			ErrNotForUs, last.Seq, id, ownerString(last.To.Name, last.To.KeyID), buyer.KeyID())
	}
	var res Result
	err = st.Update(ctx, func(tx store.Tx) error {
		var err error
		res, err = accept(tx, recs, now, o)
		return err
	})
	if err != nil {
		return Result{}, fmt.Errorf("accept %s: %w", id, err)
	}
	return res, nil
}

// accept applies verified records inside a transaction.
func accept(tx store.Tx, recs []*Opened, now time.Time, o options) (Result, error) {
	id := recs[0].DeviceID()
	d, err := tx.Device(id)
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, fmt.Errorf("%w: %s (import its manufacturer's manifest first)", ErrUnknownDevice, id)
	}
	if err != nil {
		return Result{}, err
	}
	p := d.Provenance
	if p.IDevIDKeySHA256 != recs[0].IDevIDKeySHA256 {
		return Result{}, fmt.Errorf("%w: the record names IDevID key %s, the registry %s",
			ErrMismatch, recs[0].IDevIDKeySHA256, p.IDevIDKeySHA256)
	}
	// Records the registry holds already (a chain that starts earlier than
	// the registry's owner) are skipped if they are the very same records.
	i := 0
	for ; i < len(recs) && recs[i].Seq <= p.Transfers; i++ {
		r := recs[i]
		stored, err := tx.Record(RecordKind, RecordKey(id, r.Seq))
		if errors.Is(err, store.ErrNotFound) {
			return Result{}, fmt.Errorf("%w: transfer %d is older than the registry's transfer %d", ErrReplayed, r.Seq, p.Transfers)
		}
		if err != nil {
			return Result{}, err
		}
		sum, err := payloadSHA256(stored)
		if err != nil {
			return Result{}, err
		}
		if sum != r.PayloadSHA256 {
			return Result{}, fmt.Errorf("%w: transfer %d conflicts with the transfer %d accepted before", ErrReplayed, r.Seq, r.Seq)
		}
	}
	if i == len(recs) {
		return Result{}, fmt.Errorf("%w: transfer %d was accepted before (the registry is at transfer %d)",
			ErrReplayed, recs[len(recs)-1].Seq, p.Transfers)
	}
	if recs[i].Seq != p.Transfers+1 {
		return Result{}, fmt.Errorf("%w: the file starts at transfer %d, the registry is at transfer %d: earlier records are missing",
			ErrMismatch, recs[i].Seq, p.Transfers)
	}
	res := Result{DeviceID: id}
	for j, r := range recs[i:] {
		switch {
		case p.OwnerKey != "":
			if r.FromKeyID != p.OwnerKey {
				return Result{}, fmt.Errorf("%w: transfer %d is signed by key %s, the owner's key is %s",
					ErrNotOwner, r.Seq, r.FromKeyID, p.OwnerKey)
			}
		case p.Owner != "" && r.From.Name == p.Owner:
			res.NameOnly = true
		default:
			return Result{}, fmt.Errorf("%w: transfer %d is from %q, the registry names owner %s",
				ErrNotOwner, r.Seq, r.From.Name, ownerString(p.Owner, p.OwnerKey))
		}
		if j == 0 && o.sellerKey != "" && r.FromKeyID != o.sellerKey {
			return Result{}, fmt.Errorf("%w: transfer %d is signed by key %s, not by the seller key %s",
				ErrNotOwner, r.Seq, r.FromKeyID, o.sellerKey)
		}
		if err := tx.PutRecord(RecordKind, RecordKey(id, r.Seq), r.Envelope); err != nil {
			return Result{}, err
		}
		res.From, res.FromKey = r.From.Name, r.FromKeyID
		p.Owner, p.OwnerKey, p.Transfers = r.To.Name, r.To.KeyID, r.Seq
		res.Applied++
	}
	next, err := device.Next(d.State, device.EvAcquire)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrState, err)
	}
	d.Provenance = p
	d.State, d.Zone, d.Cause, d.UpdatedAt = next, "", o.actor, now
	d.Reason = fmt.Sprintf("acquired from %s (transfer %d)", ownerString(res.From, res.FromKey), p.Transfers)
	if err := tx.PutDevice(&d); err != nil {
		return Result{}, err
	}
	res.Seq, res.To, res.ToKey, res.State = p.Transfers, p.Owner, p.OwnerKey, next
	detail := fmt.Sprintf("transfer %d from %s to %s", res.Seq, ownerString(res.From, res.FromKey), ownerString(res.To, res.ToKey))
	if res.Applied > 1 {
		detail += fmt.Sprintf(" (%d records applied)", res.Applied)
	}
	if res.NameOnly {
		detail += "; the registry named the first seller by name only"
		if o.sellerKey != "" {
			detail += ", its key was confirmed"
		}
	}
	if _, err := tx.AppendAudit(audit.Entry{Time: now, Actor: o.actor, Action: "transfer-in", DeviceID: id,
		Outcome: "ok", Detail: detail}); err != nil {
		return Result{}, err
	}
	return res, nil
}

// Chain returns the records of a device that the registry holds (those it
// created or accepted), oldest first, as a buyer needs them. It returns
// [ErrUnknownDevice] for a device not in the registry, and an empty chain
// for one never transferred.
func Chain(ctx context.Context, st store.Store, deviceID string) ([][]byte, error) {
	id, err := device.NormalizeID(deviceID)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var chain [][]byte
	err = st.View(ctx, func(r store.Reader) error {
		if _, err := r.Device(id); err != nil {
			return err
		}
		var err error
		chain, err = storedChain(r, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
	}
	if err != nil {
		return nil, fmt.Errorf("chain of %s: %w", id, err)
	}
	return chain, nil
}

// storedChain reads the records of device id in seq order.
func storedChain(r store.Reader, id string) ([][]byte, error) {
	prefix := id + "/"
	var chain [][]byte
	err := r.Records(RecordKind, prefix, func(key string, val []byte) (bool, error) {
		if !strings.HasPrefix(key, prefix) {
			return false, nil
		}
		if key != RecordKey(id, uint32(len(chain)+1)) {
			return false, fmt.Errorf("%w: stored transfer records of %s: %s out of sequence", ErrMismatch, id, key)
		}
		chain = append(chain, val)
		return true, nil
	})
	return chain, err
}

// ownerString names an owner for people: its name and the start of its key.
func ownerString(name, keyID string) string {
	switch {
	case keyID == "":
		return fmt.Sprintf("%q", name)
	case name == "":
		return "key " + keyID[:min(16, len(keyID))]
	}
	return fmt.Sprintf("%q (key %s)", name, keyID[:min(16, len(keyID))])
}
