package provenance

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/store"
)

// TrustResult describes a manufacturer after TrustManufacturer.
type TrustResult struct {
	Name          string   `json:"name"`
	Roots         int      `json:"roots"`
	Intermediates int      `json:"intermediates"`
	ManifestKeys  []string `json:"manifest_keys"`
	Replaced      bool     `json:"replaced"`
}

// TrustManufacturer adds (or replaces) a trusted manufacturer from its trust
// bundle (package manifest's TrustBundle JSON). actor names the operator.
func TrustManufacturer(ctx context.Context, st store.Store, bundle []byte, actor string, now time.Time) (TrustResult, error) {
	tb, err := manifest.ParseTrustBundle(bundle)
	if err != nil {
		return TrustResult{}, fmt.Errorf("%w: %w", ErrBadBundle, err)
	}
	m := device.Manufacturer{Name: tb.Name, TrustedAt: now}
	for _, c := range tb.Roots {
		m.Roots = append(m.Roots, c.Raw)
	}
	for _, c := range tb.Intermediates {
		m.Intermediates = append(m.Intermediates, c.Raw)
	}
	res := TrustResult{Name: tb.Name, Roots: len(m.Roots), Intermediates: len(m.Intermediates)}
	for _, k := range tb.ManifestKeys {
		m.ManifestKeys = append(m.ManifestKeys, k.Bytes())
		res.ManifestKeys = append(res.ManifestKeys, k.KeyID())
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		res.Replaced = false
		old, err := tx.Manufacturer(m.Name)
		switch {
		case err == nil:
			res.Replaced = true
			m.ManifestRevision, m.Devices = old.ManifestRevision, old.Devices
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
		if err := tx.PutManufacturer(m); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "trust-manufacturer", Outcome: "ok",
			Detail: fmt.Sprintf("%s: %d roots, %d intermediates, %d manifest keys", m.Name, res.Roots, res.Intermediates, len(res.ManifestKeys))})
		return err
	})
	if err != nil {
		return TrustResult{}, fmt.Errorf("provenance: trust %s: %w", m.Name, err)
	}
	return res, nil
}

// ImportResult describes an imported manifest.
type ImportResult struct {
	Manufacturer string `json:"manufacturer"`
	Revision     uint64 `json:"revision"`
	Devices      int    `json:"devices"`
	New          int    `json:"new"`
	Updated      int    `json:"updated"`
	SignerKey    string `json:"signer_key"`
}

// ImportManifest verifies a signed manifest envelope against the trusted
// manufacturers' keys and imports all its devices in one transaction. It is
// [ImportManifestFrom] over the bytes.
func ImportManifest(ctx context.Context, st store.Store, envelope []byte, actor string, now time.Time) (ImportResult, error) {
	return ImportManifestFrom(ctx, st, bytes.NewReader(envelope), actor, now)
}

// signingKey is a trusted manifest key and its manufacturer.
type signingKey struct {
	key *hybridsig.PublicKey
	mfr string
}

// ImportManifestFrom reads a signed manifest envelope from r and imports
// it without holding it in memory: the envelope streams into a temporary
// file while both halves of its signature are checked against the trusted
// manufacturers' keys, then every entry is checked as
// manifest.Manifest.Validate does (duplicates across the whole manifest
// included), and only then are the devices written, one entry at a time, in
// one transaction. Anything wrong refuses the whole manifest with nothing
// changed. It refuses what manifest.Open refuses, with the same errors, and
// also a payload with two "devices" members (manifest.VerifyReader). opts
// may set the size limit (default manifest.DefaultMaxSize) and where the
// temporary file goes.
func ImportManifestFrom(ctx context.Context, st store.Store, r io.Reader, actor string, now time.Time, opts ...manifest.OpenOption) (ImportResult, error) {
	keys := map[string]signingKey{}
	if err := st.View(ctx, func(rd store.Reader) error {
		mfrs, err := rd.Manufacturers()
		if err != nil {
			return err
		}
		for _, m := range mfrs {
			for _, b := range m.ManifestKeys {
				k, err := hybridsig.ParsePublicKey(b)
				if err != nil {
					return fmt.Errorf("stored key of %s: %w", m.Name, err)
				}
				keys[k.KeyID()] = signingKey{k, m.Name}
			}
		}
		return nil
	}); err != nil {
		return ImportResult{}, fmt.Errorf("provenance: %w", err)
	}
	s, err := manifest.VerifyReader(r, func(id string) (*hybridsig.PublicKey, bool) {
		k, ok := keys[id]
		return k.key, ok
	}, opts...)
	if err != nil {
		return ImportResult{}, fmt.Errorf("provenance: %w", err)
	}
	defer s.Close()
	h := s.Header()
	signers := s.KeyIDs()
	for _, id := range signers {
		if owner := keys[id].mfr; owner != h.Manufacturer {
			return ImportResult{}, fmt.Errorf("%w: manifest names %q but is signed by a key of %q", ErrUntrustedManufacturer, h.Manufacturer, owner)
		}
	}
	signer := signers[0]
	res := ImportResult{Manufacturer: h.Manufacturer, Revision: h.Revision, Devices: s.Len(), SignerKey: signer}
	err = st.Update(ctx, func(tx store.Tx) error {
		// This function may run more than once: it starts afresh.
		res.New, res.Updated = 0, 0
		mfr, err := tx.Manufacturer(h.Manufacturer)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %s", ErrUntrustedManufacturer, h.Manufacturer)
			}
			return err
		}
		if mfr.Distrusted != "" {
			return fmt.Errorf("%w: %s is distrusted: %s", ErrUntrustedManufacturer, h.Manufacturer, mfr.Distrusted)
		}
		if h.Revision < mfr.ManifestRevision {
			return fmt.Errorf("%w: revision %d < %d", ErrStaleRevision, h.Revision, mfr.ManifestRevision)
		}
		// One device value for every entry: the store's undo log keeps a
		// pointer per write, not a copy per device.
		var d device.Device
		// New devices are written in manifest order without their key
		// first, then again with it in key order (see keyLater).
		var later keyLater
		err = s.Entries(func(i int, e manifest.Entry) error {
			if i%4096 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			p := provenanceOf(h, e, signer)
			id := device.ID(h.Manufacturer, e.Serial)
			var err error
			d, err = tx.Device(id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				d = device.Device{ID: id, State: device.Expected, Cause: "manifest", UpdatedAt: now}
				res.New++
				if err := later.add(p.IDevIDKeySHA256, id); err != nil {
					return err
				}
				p.IDevIDKeySHA256 = ""
			case err != nil:
				return err
			default:
				if d.Provenance.IDevIDKeySHA256 != p.IDevIDKeySHA256 {
					return fmt.Errorf("%w: serial %s is registered with IDevID key %s, the manifest says %s",
						ErrKeyChanged, e.Serial, d.Provenance.IDevIDKeySHA256, p.IDevIDKeySHA256)
				}
				res.Updated++
			}
			if d.Provenance.Transfers > 0 {
				// Ownership moved on by accepted transfer records: the
				// manufacturer's original sale no longer decides.
				p.Owner, p.OwnerKey, p.Transfers = d.Provenance.Owner, d.Provenance.OwnerKey, d.Provenance.Transfers
			}
			d.Provenance = p
			return tx.PutDevice(&d)
		})
		if err != nil {
			return err
		}
		err = later.each(func(key, id string) error {
			var err error
			if d, err = tx.Device(id); err != nil {
				return err
			}
			d.Provenance.IDevIDKeySHA256 = key
			if err := tx.PutDevice(&d); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("%w: IDevID key of serial %s is registered to another device", ErrKeyChanged, d.Provenance.Serial)
				}
				return err
			}
			return nil
		})
		if err != nil {
			return err
		}
		mfr.ManifestRevision = h.Revision
		mfr.Devices += uint64(res.New)
		if err := tx.PutManufacturer(mfr); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "import-manifest", Outcome: "ok",
			Detail: fmt.Sprintf("%s revision %d: %d devices (%d new, %d updated), signer %s", h.Manufacturer, h.Revision,
				s.Len(), res.New, res.Updated, signer)})
		return err
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("provenance: import: %w", err)
	}
	return res, nil
}

func provenanceOf(h manifest.Header, e manifest.Entry, signer string) device.Provenance {
	return device.Provenance{
		Manufacturer: h.Manufacturer, Serial: e.Serial, IDevIDKeySHA256: e.IDevIDKeySHA256,
		Model: e.Model, HardwareRev: e.HardwareRev, FirmwareVersion: e.FirmwareVersion, FirmwareSHA256: e.FirmwareSHA256,
		SBOMRef: e.SBOMRef, SBOMSHA256: e.SBOMSHA256, ManufacturedAt: e.ManufacturedAt, Site: e.Site, Owner: e.Owner,
		OwnerKey: e.OwnerKey, ManifestRevision: h.Revision, ManifestKey: ShortKeyID(signer),
	}
}

// keyLater holds the IDevID keys of new devices until they are written in
// key order. The registry indexes devices by key; in bbolt, a node splits
// only when its transaction commits, so keys inserted in random order into
// one node move all the keys after them each time: 100,000 new keys in one
// transaction cost a quadratic 8 s of copying. So a new device is written
// first without its key (the store then leaves the index alone), in
// manifest order, which is usually serial order; then once more with its
// key, in key order: the index grows at its end and the second write
// replaces a record in place. A new device thus leaves the import at
// revision 2. Held: 32 bytes and the device ID per new device.
type keyLater struct {
	keys []laterKey
}

type laterKey struct {
	key [sha256.Size]byte
	id  string
}

func (l *keyLater) add(keyHex, id string) error {
	k := laterKey{id: id}
	// The manifest package checked the form: 64 lower-case hex digits,
	// whose order is that of the bytes.
	if n, err := hex.Decode(k.key[:], []byte(keyHex)); err != nil || n != sha256.Size {
		return fmt.Errorf("IDevID key %q of %s: not 64 hexadecimal digits", keyHex, id)
	}
	l.keys = append(l.keys, k)
	return nil
}

// each calls fn for each key in order, as lower-case hex.
func (l *keyLater) each(fn func(key, id string) error) error {
	slices.SortFunc(l.keys, func(a, b laterKey) int { return bytes.Compare(a.key[:], b.key[:]) })
	for _, k := range l.keys {
		if err := fn(hex.EncodeToString(k.key[:]), k.id); err != nil {
			return err
		}
	}
	return nil
}
