package provenance

import (
	"context"
	"errors"
	"fmt"
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
// manufacturers' keys and imports all its devices in one transaction.
func ImportManifest(ctx context.Context, st store.Store, envelope []byte, actor string, now time.Time) (ImportResult, error) {
	keys := map[string]struct {
		key *hybridsig.PublicKey
		mfr string
	}{}
	if err := st.View(ctx, func(r store.Reader) error {
		mfrs, err := r.Manufacturers()
		if err != nil {
			return err
		}
		for _, m := range mfrs {
			for _, b := range m.ManifestKeys {
				k, err := hybridsig.ParsePublicKey(b)
				if err != nil {
					return fmt.Errorf("stored key of %s: %w", m.Name, err)
				}
				keys[k.KeyID()] = struct {
					key *hybridsig.PublicKey
					mfr string
				}{k, m.Name}
			}
		}
		return nil
	}); err != nil {
		return ImportResult{}, fmt.Errorf("provenance: %w", err)
	}
	var signer string
	man, err := manifest.Open(envelope, func(id string) (*hybridsig.PublicKey, bool) {
		k, ok := keys[id]
		if ok {
			signer = id
		}
		return k.key, ok
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("provenance: %w", err)
	}
	if owner := keys[signer].mfr; owner != man.Manufacturer {
		return ImportResult{}, fmt.Errorf("%w: manifest names %q but is signed by a key of %q", ErrUntrustedManufacturer, man.Manufacturer, owner)
	}
	res := ImportResult{Manufacturer: man.Manufacturer, Revision: man.Revision, Devices: len(man.Devices), SignerKey: signer}
	err = st.Update(ctx, func(tx store.Tx) error {
		res.New, res.Updated = 0, 0
		mfr, err := tx.Manufacturer(man.Manufacturer)
		if err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %s", ErrUntrustedManufacturer, man.Manufacturer)
			}
			return err
		}
		if man.Revision < mfr.ManifestRevision {
			return fmt.Errorf("%w: revision %d < %d", ErrStaleRevision, man.Revision, mfr.ManifestRevision)
		}
		for _, e := range man.Devices {
			p := provenanceOf(man, e)
			id := device.ID(man.Manufacturer, e.Serial)
			d, err := tx.Device(id)
			switch {
			case errors.Is(err, store.ErrNotFound):
				d = device.Device{ID: id, State: device.Expected, Cause: "manifest", UpdatedAt: now}
				res.New++
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
			if err := tx.PutDevice(&d); err != nil {
				if errors.Is(err, store.ErrConflict) {
					return fmt.Errorf("%w: IDevID key of serial %s is registered to another device", ErrKeyChanged, e.Serial)
				}
				return err
			}
		}
		mfr.ManifestRevision = man.Revision
		mfr.Devices += uint64(res.New)
		if err := tx.PutManufacturer(mfr); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "import-manifest", Outcome: "ok",
			Detail: fmt.Sprintf("%s revision %d: %d devices (%d new, %d updated), signer %s", man.Manufacturer, man.Revision,
				len(man.Devices), res.New, res.Updated, signer)})
		return err
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("provenance: import: %w", err)
	}
	return res, nil
}

func provenanceOf(m *manifest.Manifest, e manifest.Entry) device.Provenance {
	return device.Provenance{
		Manufacturer: m.Manufacturer, Serial: e.Serial, IDevIDKeySHA256: e.IDevIDKeySHA256,
		Model: e.Model, HardwareRev: e.HardwareRev, FirmwareVersion: e.FirmwareVersion, FirmwareSHA256: e.FirmwareSHA256,
		SBOMRef: e.SBOMRef, SBOMSHA256: e.SBOMSHA256, ManufacturedAt: e.ManufacturedAt, Site: e.Site, Owner: e.Owner,
		OwnerKey: e.OwnerKey, ManifestRevision: m.Revision,
	}
}
