package operator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/store"
)

// Kinds of the registry's opaque records this package owns.
const (
	// KindOperator: the current certificate of each operator, by name.
	KindOperator = "operator"
	// KindRemoved: the deny list, by certificate serial.
	KindRemoved = "operator-removed"
)

// Record is a registered operator: the holder of one current certificate.
type Record struct {
	Name     string    `json:"name"`
	Role     Role      `json:"role"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	Added    time.Time `json:"added"`
	AddedBy  string    `json:"added_by"`
}

// Removal is a deny-list entry: a removed operator's certificate.
type Removal struct {
	Serial    string    `json:"serial"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	NotAfter  time.Time `json:"not_after"`
	Removed   time.Time `json:"removed"`
	RemovedBy string    `json:"removed_by"`
	Reason    string    `json:"reason,omitempty"`
}

// Add records rec as the current certificate of its operator, with an audit
// entry naming actor. It fails with ErrExists if the name is registered
// (remove it first) and ErrRemoved if the serial is on the deny list.
func Add(ctx context.Context, st store.Store, rec Record, actor string) error {
	if err := CheckName(rec.Name); err != nil {
		return err
	}
	if !rec.Role.valid() {
		return fmt.Errorf("%w: %d", ErrRole, int(rec.Role))
	}
	val, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("operator: add: %w", err)
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Record(KindOperator, rec.Name); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, rec.Name)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if _, err := tx.Record(KindRemoved, rec.Serial); err == nil {
			return fmt.Errorf("%w: serial %s", ErrRemoved, rec.Serial)
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.PutRecord(KindOperator, rec.Name, val); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Entry{Time: rec.Added, Actor: actor, Action: "operator-add", Outcome: "ok", Cert: rec.Serial,
			Detail: fmt.Sprintf("%s (%s) until %s", rec.Name, rec.Role, rec.NotAfter.UTC().Format(time.RFC3339))})
		return err
	})
	if err != nil {
		return fmt.Errorf("operator: add %s: %w", rec.Name, err)
	}
	return nil
}

// Remove puts the current certificate of operator name on the deny list
// and unregisters the name, with an audit entry naming actor. It fails with
// ErrUnknown if no operator has that name.
func Remove(ctx context.Context, st store.Store, name, actor, reason string, now time.Time) (Removal, error) {
	var out Removal
	err := st.Update(ctx, func(tx store.Tx) error {
		rec, err := record(tx, name)
		if err != nil {
			return err
		}
		out = Removal{Serial: rec.Serial, Name: rec.Name, Role: rec.Role, NotAfter: rec.NotAfter, Removed: now, RemovedBy: actor, Reason: reason}
		val, err := json.Marshal(out)
		if err != nil {
			return err
		}
		if err := tx.PutRecord(KindRemoved, rec.Serial, val); err != nil {
			return err
		}
		if err := tx.DeleteRecord(KindOperator, name); err != nil {
			return err
		}
		if err := pruneExpired(tx, now); err != nil {
			return err
		}
		detail := fmt.Sprintf("%s (%s)", rec.Name, rec.Role)
		if reason != "" {
			detail += ": " + reason
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "operator-remove", Outcome: "ok", Cert: rec.Serial, Detail: detail})
		return err
	})
	if err != nil {
		return Removal{}, fmt.Errorf("operator: remove %s: %w", name, err)
	}
	return out, nil
}

// pruneExpired drops deny-list entries of certificates that expired: the
// TLS handshake refuses those anyway.
func pruneExpired(tx store.Tx, now time.Time) error {
	var gone []string
	if err := tx.Records(KindRemoved, "", func(key string, val []byte) (bool, error) {
		var r Removal
		if json.Unmarshal(val, &r) == nil && !r.NotAfter.IsZero() && r.NotAfter.Before(now) {
			gone = append(gone, key)
		}
		return true, nil
	}); err != nil {
		return err
	}
	for _, k := range gone {
		if err := tx.DeleteRecord(KindRemoved, k); err != nil {
			return err
		}
	}
	return nil
}

func record(rd store.Reader, name string) (Record, error) {
	b, err := rd.Record(KindOperator, name)
	if errors.Is(err, store.ErrNotFound) {
		return Record{}, fmt.Errorf("%w: %s", ErrUnknown, name)
	}
	if err != nil {
		return Record{}, err
	}
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return Record{}, fmt.Errorf("operator: record %s: %w", name, err)
	}
	return rec, nil
}

// Get returns the registered operator name.
func Get(rd store.Reader, name string) (Record, error) { return record(rd, name) }

// Check accepts id (as read from a verified certificate) only if its serial
// is not on the deny list and it is the current certificate of a
// registered operator with the same role. It fails with ErrRemoved or
// ErrUnknown.
func Check(rd store.Reader, id Identity) error {
	if b, err := rd.Record(KindRemoved, id.Serial); err == nil {
		var rm Removal
		if json.Unmarshal(b, &rm) == nil && !rm.Removed.IsZero() {
			return fmt.Errorf("%w: operator %q (certificate %s) was removed on %s", ErrRemoved, id.Name, id.Serial, rm.Removed.UTC().Format(time.RFC3339))
		}
		return fmt.Errorf("%w: operator %q (certificate %s)", ErrRemoved, id.Name, id.Serial)
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("operator: check: %w", err)
	}
	rec, err := record(rd, id.Name)
	if err != nil {
		if errors.Is(err, ErrUnknown) {
			return fmt.Errorf("%w: %q is not a registered operator", ErrUnknown, id.Name)
		}
		return err
	}
	if rec.Serial != id.Serial || rec.Role != id.Role {
		return fmt.Errorf("%w: certificate %s is not the current one of operator %q", ErrUnknown, id.Serial, id.Name)
	}
	return nil
}

// List returns the registered operators by name and the deny list, most
// recent removal first.
func List(rd store.Reader) ([]Record, []Removal, error) {
	recs := []Record{}
	if err := rd.Records(KindOperator, "", func(key string, val []byte) (bool, error) {
		var r Record
		if err := json.Unmarshal(val, &r); err != nil {
			return false, fmt.Errorf("operator: record %s: %w", key, err)
		}
		recs = append(recs, r)
		return true, nil
	}); err != nil {
		return nil, nil, err
	}
	removed := []Removal{}
	if err := rd.Records(KindRemoved, "", func(key string, val []byte) (bool, error) {
		var r Removal
		if err := json.Unmarshal(val, &r); err != nil {
			return false, fmt.Errorf("operator: removal %s: %w", key, err)
		}
		removed = append(removed, r)
		return true, nil
	}); err != nil {
		return nil, nil, err
	}
	sort.SliceStable(removed, func(i, j int) bool { return removed[i].Removed.After(removed[j].Removed) })
	return recs, removed, nil
}
