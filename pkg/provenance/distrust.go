package provenance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/store"
)

// ErrUnknownManufacturer is returned for a manufacturer that was never trusted.
var ErrUnknownManufacturer = errors.New("provenance: unknown manufacturer")

// ErrUnknownKey is returned for a manifest key the manufacturer does not have.
var ErrUnknownKey = errors.New("provenance: unknown manifest key")

// DistrustResult describes a trust change.
type DistrustResult struct {
	Manufacturer string `json:"manufacturer"`
	Key          string `json:"key,omitempty"`
	// Marked counts the devices marked for re-evaluation.
	Marked int `json:"marked"`
}

// DistrustManufacturer withdraws the trust in a manufacturer: its IDevIDs no
// longer verify (once the caller reloads trust), its manifests are refused,
// and every device it made is marked for re-evaluation. The registry keeps
// the manufacturer and its devices, for history and for a later re-trust.
func DistrustManufacturer(ctx context.Context, st store.Store, name, reason, actor string, now time.Time) (DistrustResult, error) {
	if reason == "" {
		return DistrustResult{}, fmt.Errorf("provenance: distrust %s: a reason is required", name)
	}
	res := DistrustResult{Manufacturer: name}
	err := st.Update(ctx, func(tx store.Tx) error {
		m, err := tx.Manufacturer(name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrUnknownManufacturer, name)
		}
		if err != nil {
			return err
		}
		m.Distrusted, m.DistrustedAt = reason, now
		if err := tx.PutManufacturer(m); err != nil {
			return err
		}
		res.Marked, err = markDevices(tx, func(d device.Device) bool { return d.Provenance.Manufacturer == name },
			"manufacturer distrusted: "+reason, now)
		if err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "distrust-manufacturer", Outcome: "ok",
			Detail: fmt.Sprintf("%s: %s; %d devices marked for re-evaluation", name, reason, res.Marked)})
		return err
	})
	if err != nil {
		return DistrustResult{}, fmt.Errorf("provenance: distrust %s: %w", name, err)
	}
	return res, nil
}

// DistrustKey withdraws one manifest signing key of a manufacturer (after a
// compromise): manifests signed by it are refused from now on, and the
// devices last imported from a manifest it signed are marked for
// re-evaluation.
func DistrustKey(ctx context.Context, st store.Store, name, keyID, reason, actor string, now time.Time) (DistrustResult, error) {
	if reason == "" {
		return DistrustResult{}, fmt.Errorf("provenance: distrust key: a reason is required")
	}
	res := DistrustResult{Manufacturer: name, Key: keyID}
	err := st.Update(ctx, func(tx store.Tx) error {
		m, err := tx.Manufacturer(name)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrUnknownManufacturer, name)
		}
		if err != nil {
			return err
		}
		kept := m.ManifestKeys[:0:0]
		found := false
		for _, b := range m.ManifestKeys {
			k, err := hybridsig.ParsePublicKey(b)
			if err != nil {
				return fmt.Errorf("stored key of %s: %w", name, err)
			}
			if k.KeyID() == keyID {
				found = true
				continue
			}
			kept = append(kept, b)
		}
		if !found {
			return fmt.Errorf("%w: %s has no manifest key %s", ErrUnknownKey, name, keyID)
		}
		m.ManifestKeys = kept
		if !slices.Contains(m.RevokedKeys, keyID) {
			m.RevokedKeys = append(m.RevokedKeys, keyID)
		}
		if err := tx.PutManufacturer(m); err != nil {
			return err
		}
		res.Marked, err = markDevices(tx, func(d device.Device) bool {
			return d.Provenance.Manufacturer == name && d.Provenance.ManifestKey == ShortKeyID(keyID)
		}, "manifest key "+keyID[:16]+".. withdrawn: "+reason, now)
		if err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "distrust-manifest-key", Outcome: "ok",
			Detail: fmt.Sprintf("%s key %s: %s; %d devices marked for re-evaluation", name, keyID, reason, res.Marked)})
		return err
	})
	if err != nil {
		return DistrustResult{}, fmt.Errorf("provenance: distrust key: %w", err)
	}
	return res, nil
}

// markDevices sets the re-evaluation flag on every device match selects.
func markDevices(tx store.Tx, match func(device.Device) bool, why string, now time.Time) (int, error) {
	var marked []device.Device
	if err := tx.Devices("", func(d device.Device) (bool, error) {
		if match(d) {
			marked = append(marked, d)
		}
		return true, nil
	}); err != nil {
		return 0, err
	}
	for _, d := range marked {
		d.Flags.Reevaluate = why
		d.UpdatedAt = now
		if err := tx.PutDevice(&d); err != nil {
			return 0, err
		}
	}
	return len(marked), nil
}

// ShortKeyID is how a device record names the key that signed its manifest:
// the first 16 hex digits (64 bits) of the KeyID, enough to tell a
// manufacturer's few keys apart at a quarter of the space.
func ShortKeyID(keyID string) string {
	if len(keyID) > 16 {
		return keyID[:16]
	}
	return keyID
}
