// Package desired keeps the desired state of each device: the document
// Embark wants a device to converge to (rotate now, zone, revoked), with a
// generation number that grows with every change and the generation the
// device last reported applied.
//
// It is transport-neutral: the MQTT transport publishes each change as a
// signed retained command, the CoAP transport notifies observers of its
// status resource, rotation campaigns write through it. A change is
// committed (with an audit entry) before anyone is told, so a device that
// was away converges when it comes back: it sees the latest generation, not
// a queue of old ones.
package desired

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/store"
)

// Kind is the record kind the documents are kept under, keyed by device ID.
const Kind = "desired"

var (
	// ErrUnknownDevice: no such device in the registry.
	ErrUnknownDevice = errors.New("desired: unknown device")
	// ErrAhead: a device reports a generation that was never issued.
	ErrAhead = errors.New("desired: generation not issued yet")
)

// Desired is the desired state of one device.
type Desired struct {
	Generation uint64 `cbor:"1,keyasint" json:"generation"`
	// Rotate asks for a renewal with a new key; it belongs to the
	// generation that set it.
	Rotate   bool   `cbor:"2,keyasint,omitempty" json:"rotate,omitempty"`
	Campaign string `cbor:"3,keyasint,omitempty" json:"campaign,omitempty"`
	Zone     string `cbor:"4,keyasint,omitempty" json:"zone,omitempty"`
	Revoked  bool   `cbor:"5,keyasint,omitempty" json:"revoked,omitempty"`
	Reason   string `cbor:"6,keyasint,omitempty" json:"reason,omitempty"`
	// Applied is the newest generation the device reported applied.
	Applied   uint64    `cbor:"7,keyasint,omitempty" json:"applied"`
	Changed   time.Time `cbor:"8,keyasint,omitempty" json:"changed"`
	AppliedAt time.Time `cbor:"9,keyasint,omitempty" json:"applied_at,omitzero"`
}

// Pending reports whether the device has not applied the latest generation.
func (d Desired) Pending() bool { return d.Applied < d.Generation }

// String describes the document for people and the audit log.
func (d Desired) String() string {
	parts := []string{fmt.Sprintf("generation %d", d.Generation)}
	if d.Rotate {
		parts = append(parts, "rotate")
	}
	if d.Campaign != "" {
		parts = append(parts, "campaign "+d.Campaign)
	}
	if d.Zone != "" {
		parts = append(parts, "zone "+d.Zone)
	}
	if d.Revoked {
		parts = append(parts, "revoked")
	}
	if d.Reason != "" {
		parts = append(parts, "reason: "+d.Reason)
	}
	return strings.Join(parts, ", ")
}

// Store reads and changes desired state in the registry. It is safe for
// concurrent use.
type Store struct {
	st    store.Store
	clock func() time.Time

	mu   sync.RWMutex
	subs []func(id string, d Desired)
}

// New returns a Store over the registry; clock nil means time.Now.
func New(st store.Store, clock func() time.Time) *Store {
	if clock == nil {
		clock = time.Now
	}
	return &Store{st: st, clock: clock}
}

// OnChange registers fn, called after every committed change (new
// generation or applied report) with the document as committed. It must not
// block for long.
func (s *Store) OnChange(fn func(id string, d Desired)) {
	s.mu.Lock()
	s.subs = append(s.subs, fn)
	s.mu.Unlock()
}

func (s *Store) notify(id string, d Desired) {
	s.mu.RLock()
	subs := s.subs
	s.mu.RUnlock()
	for _, fn := range subs {
		fn(id, d)
	}
}

// Set changes the desired state of a device: edit sets the fields of a
// copy whose one-shot fields (Rotate, Campaign) are cleared; the result is
// committed as a new generation with an audit entry naming actor.
func (s *Store) Set(ctx context.Context, id, actor string, edit func(*Desired)) (Desired, error) {
	var out Desired
	now := s.clock()
	err := s.st.Update(ctx, func(tx store.Tx) error {
		d, err := load(tx, id)
		if err != nil {
			return err
		}
		d.Rotate, d.Campaign = false, ""
		edit(&d)
		d.Generation++
		d.Changed = now
		if err := put(tx, id, d); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "command", DeviceID: id,
			Outcome: "ok", Detail: d.String()})
		out = d
		return err
	})
	if err != nil {
		return Desired{}, fmt.Errorf("desired: %s: %w", id, err)
	}
	s.notify(id, out)
	return out, nil
}

// Of returns the desired state of a device; the zero value if it never had
// any, ErrUnknownDevice if there is no such device.
func (s *Store) Of(ctx context.Context, id string) (Desired, error) {
	var d Desired
	err := s.st.View(ctx, func(r store.Reader) error {
		var err error
		d, err = load(r, id)
		return err
	})
	return d, err
}

// Applied records the generation a device reports applied. A report of a
// generation already applied changes nothing; one ahead of the latest is
// refused (ErrAhead).
func (s *Store) Applied(ctx context.Context, id string, gen uint64) (Desired, error) {
	now := s.clock()
	var out Desired
	changed := false
	err := s.st.Update(ctx, func(tx store.Tx) error {
		d, err := load(tx, id)
		if err != nil {
			return err
		}
		out = d
		switch {
		case gen > d.Generation:
			return fmt.Errorf("%w: generation %d applied, the latest is %d", ErrAhead, gen, d.Generation)
		case gen <= d.Applied:
			return nil
		}
		d.Applied, d.AppliedAt = gen, now
		if err := put(tx, id, d); err != nil {
			return err
		}
		out, changed = d, true
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: "device", Action: "command applied", DeviceID: id,
			Outcome: "ok", Detail: fmt.Sprintf("generation %d", gen)})
		return err
	})
	if err != nil {
		return Desired{}, err
	}
	if changed {
		s.notify(id, out)
	}
	return out, nil
}

// Pending calls fn for every device that has not applied its latest
// generation, in device order, a page at a time (fn runs outside any
// transaction).
func (s *Store) Pending(ctx context.Context, fn func(id string, d Desired) error) error {
	const page = 1000
	after := ""
	for {
		type item struct {
			id string
			d  Desired
		}
		var items []item
		scanned := 0
		err := s.st.View(ctx, func(r store.Reader) error {
			return r.Records(Kind, after, func(key string, val []byte) (bool, error) {
				after, scanned = key, scanned+1
				var d Desired
				if err := cbor.Unmarshal(val, &d); err != nil {
					return false, fmt.Errorf("desired state of %s: %w", key, err)
				}
				if d.Pending() {
					items = append(items, item{key, d})
				}
				return scanned < page, nil
			})
		})
		if err != nil {
			return err
		}
		for _, it := range items {
			if err := fn(it.id, it.d); err != nil {
				return err
			}
		}
		if scanned < page {
			return nil
		}
	}
}

func load(r store.Reader, id string) (Desired, error) {
	var d Desired
	if _, err := r.Device(id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return d, fmt.Errorf("%w: %s", ErrUnknownDevice, id)
		}
		return d, err
	}
	b, err := r.Record(Kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if err := cbor.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("desired state of %s: %w", id, err)
	}
	return d, nil
}

func put(tx store.Tx, id string, d Desired) error {
	b, err := cbor.Marshal(d)
	if err != nil {
		return err
	}
	return tx.PutRecord(Kind, id, b)
}
