package campaign

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// Record kinds in the registry: campaigns by ID, items by "ID/device".
const (
	Kind     = "campaign"
	ItemKind = "campaign-item"
)

// Limits and defaults of a campaign.
const (
	// DefaultRate is the rate when none is given, in devices per second.
	DefaultRate = 100.0
	// MaxRate is the highest rate accepted; beyond it, ask for no limit.
	MaxRate = 10000.0
	// DefaultTimeout is how long a device has to complete by default.
	DefaultTimeout = 10 * time.Minute
	MinTimeout     = time.Second
	MaxTimeout     = 30 * 24 * time.Hour
	// MaxAsks bounds how often one device is asked, when later changes of
	// its desired state overwrote the request before it acted on it.
	MaxAsks = 3
)

// Select names what a campaign selects.
type Select string

// Selectors.
const (
	SelectDevice Select = "device"
	SelectModel  Select = "model"
	SelectZone   Select = "zone"
	SelectAll    Select = "all"
)

// Selector says which devices a campaign asks.
type Selector struct {
	Select Select `cbor:"1,keyasint" json:"select"`
	// Value is the device ID, the model or the zone; empty for all.
	Value string `cbor:"2,keyasint,omitempty" json:"value,omitempty"`
}

func (s Selector) String() string {
	if s.Select == SelectAll {
		return "all devices"
	}
	return string(s.Select) + " " + s.Value
}

// State is where a campaign stands.
type State string

// Campaign states.
const (
	Running   State = "running"
	Finished  State = "finished"
	Cancelled State = "cancelled"
)

// ItemState is where one device of a campaign stands.
type ItemState string

// Item states; see the package documentation.
const (
	Queued       ItemState = "queued"
	Pending      ItemState = "pending"
	Done         ItemState = "done"
	Failed       ItemState = "failed"
	Offline      ItemState = "offline"
	ItemCanceled ItemState = "cancelled"
)

// Valid reports whether s is one of the item states.
func (s ItemState) Valid() bool {
	switch s {
	case Queued, Pending, Done, Failed, Offline, ItemCanceled:
		return true
	}
	return false
}

// Duration is a time.Duration that JSON shows as "90s", "10m0s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string such as \"10m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Spec is what an operator asks for.
type Spec struct {
	Selector
	// Rate is how many devices are asked per second, in (0, MaxRate].
	Rate float64
	// Unlimited asks every device as fast as the server can; Rate must
	// then be 0.
	Unlimited bool
	// Timeout is how long each device has to complete after it was asked;
	// 0 means DefaultTimeout.
	Timeout time.Duration
}

// Campaign is a rotation campaign as the registry keeps it.
type Campaign struct {
	ID       string   `cbor:"1,keyasint" json:"id"`
	Selector Selector `cbor:"2,keyasint" json:"selector"`
	// Rate is in devices per second; 0 when Unlimited.
	Rate      float64   `cbor:"3,keyasint,omitempty" json:"rate,omitempty"`
	Unlimited bool      `cbor:"4,keyasint,omitempty" json:"unlimited,omitempty"`
	Timeout   Duration  `cbor:"5,keyasint" json:"timeout"`
	Created   time.Time `cbor:"6,keyasint" json:"created"`
	CreatedBy string    `cbor:"7,keyasint,omitempty" json:"created_by,omitempty"`
	State     State     `cbor:"8,keyasint" json:"state"`
	// Ended is when the campaign finished or was cancelled.
	Ended   time.Time `cbor:"9,keyasint,omitempty" json:"ended,omitzero"`
	EndedBy string    `cbor:"10,keyasint,omitempty" json:"ended_by,omitempty"`
	// Devices is how many devices the campaign selected.
	Devices int `cbor:"11,keyasint" json:"devices"`
}

// Item is one device of a campaign.
type Item struct {
	Device string    `cbor:"-" json:"device"`
	State  ItemState `cbor:"1,keyasint" json:"state"`
	// Generation is the desired-state generation that asked the device.
	Generation uint64    `cbor:"2,keyasint,omitempty" json:"generation,omitempty"`
	AskedAt    time.Time `cbor:"3,keyasint,omitempty" json:"asked_at,omitzero"`
	Asks       int       `cbor:"4,keyasint,omitempty" json:"asks,omitempty"`
	// OldCert and OldKey are the device's current certificate and its key
	// (hex SHA-256 of the SubjectPublicKeyInfo) before the ask.
	OldCert string `cbor:"5,keyasint,omitempty" json:"old_cert,omitempty"`
	OldKey  string `cbor:"6,keyasint,omitempty" json:"old_key_sha256,omitempty"`
	// NewCert and NewKey are the certificate confirmed in use at the end.
	NewCert string    `cbor:"7,keyasint,omitempty" json:"new_cert,omitempty"`
	NewKey  string    `cbor:"8,keyasint,omitempty" json:"new_key_sha256,omitempty"`
	DoneAt  time.Time `cbor:"9,keyasint,omitempty" json:"done_at,omitzero"`
	// Reason says why the device failed, is offline or was asked again.
	Reason  string    `cbor:"10,keyasint,omitempty" json:"reason,omitempty"`
	Changed time.Time `cbor:"11,keyasint,omitempty" json:"changed,omitzero"`
}

// itemState decodes only the state of an item: counting needs no more.
type itemState struct {
	State ItemState `cbor:"1,keyasint"`
}

// Counts are the devices of a campaign by state.
type Counts struct {
	Queued    int `json:"queued"`
	Pending   int `json:"pending"`
	Done      int `json:"done"`
	Failed    int `json:"failed"`
	Offline   int `json:"offline"`
	Cancelled int `json:"cancelled"`
}

func (c *Counts) add(s ItemState, n int) {
	switch s {
	case Queued:
		c.Queued += n
	case Pending:
		c.Pending += n
	case Done:
		c.Done += n
	case Failed:
		c.Failed += n
	case Offline:
		c.Offline += n
	case ItemCanceled:
		c.Cancelled += n
	}
}

// Summary is a campaign with its counts.
type Summary struct {
	Campaign
	Counts Counts `json:"counts"`
}

// Detail is a campaign, its counts and a page of its devices.
type Detail struct {
	Summary
	Items []Item `json:"items"`
	// Next is the cursor of the next page ("after"), empty at the end.
	Next string `json:"next,omitempty"`
}

// Query selects a page of a campaign's devices.
type Query struct {
	// After is the device ID the page starts after.
	After string
	// Limit bounds the page; 0 means 100.
	Limit int
	// State, if set, keeps only the devices in this state.
	State ItemState
}

// Check validates s and fills in defaults.
func (s Spec) Check() (Spec, error) {
	switch s.Select {
	case SelectDevice:
		id, err := device.NormalizeID(s.Value)
		if err != nil {
			return s, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		s.Value = id
	case SelectModel, SelectZone:
		if strings.TrimSpace(s.Value) == "" || len(s.Value) > 256 {
			return s, fmt.Errorf("%w: select %s needs a value of 1..256 bytes", ErrInvalid, s.Select)
		}
	case SelectAll:
		if s.Value != "" {
			return s, fmt.Errorf("%w: select all takes no value", ErrInvalid)
		}
	default:
		return s, fmt.Errorf("%w: select %q: want device, model, zone or all", ErrInvalid, s.Select)
	}
	switch {
	case s.Unlimited && s.Rate != 0:
		return s, fmt.Errorf("%w: a rate of %g devices/s and no limit at once", ErrInvalid, s.Rate)
	case s.Unlimited:
	case math.IsNaN(s.Rate) || s.Rate <= 0:
		return s, fmt.Errorf("%w: rate %g devices/s: want more than 0 (or no limit)", ErrInvalid, s.Rate)
	case s.Rate > MaxRate:
		return s, fmt.Errorf("%w: rate %g devices/s is above %g: ask for no limit instead", ErrInvalid, s.Rate, MaxRate)
	}
	switch {
	case s.Timeout == 0:
		s.Timeout = DefaultTimeout
	case s.Timeout < MinTimeout || s.Timeout > MaxTimeout:
		return s, fmt.Errorf("%w: timeout %s: want %s..%s", ErrInvalid, s.Timeout, MinTimeout, MaxTimeout)
	}
	return s, nil
}

// Start selects the devices of spec that hold a live LDevID and commits a
// running campaign with one queued item each, and an audit entry naming
// actor. A runner asks the devices.
func Start(ctx context.Context, st store.Store, spec Spec, actor string, now time.Time) (Summary, error) {
	spec, err := spec.Check()
	if err != nil {
		return Summary{}, err
	}
	id, err := newID(now)
	if err != nil {
		return Summary{}, err
	}
	c := Campaign{ID: id, Selector: spec.Selector, Rate: spec.Rate, Unlimited: spec.Unlimited, Timeout: Duration(spec.Timeout),
		Created: now, CreatedBy: actor, State: Running}
	err = st.Update(ctx, func(tx store.Tx) error {
		var items []Item
		matched := 0
		consider := func(d device.Device) error {
			matched++
			cert, ok, err := rotatable(tx, d)
			if err != nil || !ok {
				return err
			}
			items = append(items, Item{Device: d.ID, State: Queued, OldCert: cert.Serial, OldKey: cert.KeySHA256, Changed: now})
			return nil
		}
		if spec.Select == SelectDevice {
			d, err := tx.Device(spec.Value)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %s", ErrUnknownDevice, spec.Value)
			}
			if err != nil {
				return err
			}
			if err := consider(d); err != nil {
				return err
			}
			if len(items) == 0 {
				return fmt.Errorf("%w: %s is %s without a live LDevID", ErrNothingToRotate, d.ID, d.State)
			}
		} else {
			err := tx.Devices("", func(d device.Device) (bool, error) {
				if (spec.Select == SelectModel && d.Provenance.Model != spec.Value) || (spec.Select == SelectZone && d.Zone != spec.Value) {
					return true, nil
				}
				return true, consider(d)
			})
			if err != nil {
				return err
			}
			switch {
			case matched == 0 && spec.Select == SelectModel:
				return fmt.Errorf("%w: no device of model %q", ErrUnknownModel, spec.Value)
			case matched == 0 && spec.Select == SelectZone:
				return fmt.Errorf("%w: no device in zone %q", ErrUnknownZone, spec.Value)
			case matched == 0:
				return fmt.Errorf("%w: the registry holds no device", ErrNothingToRotate)
			case len(items) == 0:
				return fmt.Errorf("%w: %d devices match %s, none holds a live LDevID", ErrNothingToRotate, matched, spec.Selector)
			}
		}
		c.Devices = len(items)
		if err := putCampaign(tx, c); err != nil {
			return err
		}
		for _, it := range items {
			if err := putItem(tx, id, it); err != nil {
				return err
			}
		}
		_, err := tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "campaign start", Outcome: "ok",
			Detail: fmt.Sprintf("%s: rotate %s (%d devices, %d matched), %s, timeout %s", id, spec.Selector, len(items), matched,
				rateText(c), spec.Timeout)})
		return err
	})
	if err != nil {
		return Summary{}, wrap("start", err)
	}
	return Summary{Campaign: c, Counts: Counts{Queued: c.Devices}}, nil
}

// rotatable reports whether d can rotate: onboarded or quarantined, with a
// usable current certificate, which it returns.
func rotatable(r store.Reader, d device.Device) (device.Certificate, bool, error) {
	if (d.State != device.Onboarded && d.State != device.Quarantined) || d.Current == "" {
		return device.Certificate{}, false, nil
	}
	c, err := r.Certificate(d.Current)
	if errors.Is(err, store.ErrNotFound) {
		return c, false, nil
	}
	if err != nil {
		return c, false, err
	}
	return c, c.Status.Usable(), nil
}

func rateText(c Campaign) string {
	if c.Unlimited {
		return "no rate limit"
	}
	return fmt.Sprintf("%g devices/s", c.Rate)
}

// newID names a campaign after its start time, with a random suffix.
func newID(now time.Time) (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("campaign: id: %w", err)
	}
	return "rot-" + now.UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:]), nil
}

// ValidID reports whether id can name a campaign.
func ValidID(id string) bool {
	if !strings.HasPrefix(id, "rot-") || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if (r < '0' || r > '9') && (r < 'a' || r > 'z') && r != '-' {
			return false
		}
	}
	return true
}

// List returns every campaign with its counts, oldest first.
func List(ctx context.Context, st store.Store) ([]Summary, error) {
	var out []Summary
	err := st.View(ctx, func(r store.Reader) error {
		out = []Summary{}
		var cs []Campaign
		if err := r.Records(Kind, "", func(_ string, val []byte) (bool, error) {
			c, err := decodeCampaign(val)
			cs = append(cs, c)
			return err == nil, err
		}); err != nil {
			return err
		}
		for _, c := range cs {
			s := Summary{Campaign: c}
			if err := r.Records(ItemKind, c.ID+"/", func(key string, val []byte) (bool, error) {
				if !strings.HasPrefix(key, c.ID+"/") {
					return false, nil
				}
				var st itemState
				if err := cbor.Unmarshal(val, &st); err != nil {
					return false, fmt.Errorf("campaign item %s: %w", key, err)
				}
				s.Counts.add(st.State, 1)
				return true, nil
			}); err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	if err != nil {
		return nil, wrap("list", err)
	}
	return out, nil
}

// Get returns a campaign, its counts and a page of its devices.
func Get(ctx context.Context, st store.Store, id string, q Query) (Detail, error) {
	if q.Limit <= 0 {
		q.Limit = 100
	}
	if q.State != "" && !q.State.Valid() {
		return Detail{}, fmt.Errorf("%w: state %q", ErrInvalid, q.State)
	}
	var out Detail
	err := st.View(ctx, func(r store.Reader) error {
		out = Detail{Items: []Item{}}
		c, err := loadCampaign(r, id)
		if err != nil {
			return err
		}
		out.Campaign = c
		// Every item counts; only the page's are decoded in full.
		prefix := id + "/"
		return r.Records(ItemKind, prefix, func(key string, val []byte) (bool, error) {
			dev, ok := strings.CutPrefix(key, prefix)
			if !ok {
				return false, nil
			}
			var st itemState
			if err := cbor.Unmarshal(val, &st); err != nil {
				return false, fmt.Errorf("campaign item %s: %w", key, err)
			}
			out.Counts.add(st.State, 1)
			if dev <= q.After || (q.State != "" && st.State != q.State) {
				return true, nil
			}
			if len(out.Items) == q.Limit {
				if out.Next == "" {
					out.Next = out.Items[len(out.Items)-1].Device
				}
				return true, nil
			}
			var it Item
			if err := cbor.Unmarshal(val, &it); err != nil {
				return false, fmt.Errorf("campaign item %s: %w", key, err)
			}
			it.Device = dev
			out.Items = append(out.Items, it)
			return true, nil
		})
	})
	if err != nil {
		return Detail{}, wrap("get", err)
	}
	return out, nil
}

// Cancel marks a running campaign cancelled; the runner withdraws the
// requests not acted on yet. It is audited under actor.
func Cancel(ctx context.Context, st store.Store, id, actor string, now time.Time) (Campaign, error) {
	c, err := setState(ctx, st, id, Cancelled, actor, now, "")
	if err != nil {
		return Campaign{}, wrap("cancel", err)
	}
	return c, nil
}

// wrap names the operation of errors that are not the package's own
// (those already say what is wrong).
func wrap(op string, err error) error {
	for _, e := range []error{ErrInvalid, ErrUnknownDevice, ErrUnknownModel, ErrUnknownZone, ErrNothingToRotate,
		ErrUnknownCampaign, ErrNotRunning} {
		if errors.Is(err, e) {
			return err
		}
	}
	return fmt.Errorf("campaign: %s: %w", op, err)
}

// setState moves a running campaign to state, with an audit entry.
func setState(ctx context.Context, st store.Store, id string, state State, actor string, now time.Time, detail string) (Campaign, error) {
	var out Campaign
	err := st.Update(ctx, func(tx store.Tx) error {
		c, err := loadCampaign(tx, id)
		if err != nil {
			return err
		}
		if c.State != Running {
			return fmt.Errorf("%w: %s is %s", ErrNotRunning, id, c.State)
		}
		c.State, c.Ended, c.EndedBy = state, now, actor
		if err := putCampaign(tx, c); err != nil {
			return err
		}
		action := "campaign cancel"
		if state == Finished {
			action = "campaign finished"
		}
		d := id
		if detail != "" {
			d += ": " + detail
		}
		if _, err := tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: action, Outcome: "ok", Detail: d}); err != nil {
			return err
		}
		out = c
		return nil
	})
	return out, err
}

func loadCampaign(r store.Reader, id string) (Campaign, error) {
	if !ValidID(id) {
		return Campaign{}, fmt.Errorf("%w: %q", ErrUnknownCampaign, id)
	}
	b, err := r.Record(Kind, id)
	if errors.Is(err, store.ErrNotFound) {
		return Campaign{}, fmt.Errorf("%w: %s", ErrUnknownCampaign, id)
	}
	if err != nil {
		return Campaign{}, err
	}
	return decodeCampaign(b)
}

func decodeCampaign(b []byte) (Campaign, error) {
	var c Campaign
	if err := cbor.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("campaign record: %w", err)
	}
	return c, nil
}

// encMode keeps the times of the records to the nanosecond: the asks of a
// campaign are milliseconds apart.
var encMode, encModeErr = cbor.EncOptions{Time: cbor.TimeRFC3339Nano}.EncMode()

func marshal(v any) ([]byte, error) {
	if encModeErr != nil {
		return nil, encModeErr
	}
	return encMode.Marshal(v)
}

func putCampaign(tx store.Tx, c Campaign) error {
	b, err := marshal(c)
	if err != nil {
		return err
	}
	return tx.PutRecord(Kind, c.ID, b)
}

func itemKey(id, deviceID string) string { return id + "/" + deviceID }

func putItem(tx store.Tx, id string, it Item) error {
	b, err := marshal(it)
	if err != nil {
		return err
	}
	return tx.PutRecord(ItemKind, itemKey(id, it.Device), b)
}

// eachItem calls fn for the items of campaign id whose device ID is
// greater than after, in device order.
func eachItem(r store.Reader, id, after string, fn func(Item) (bool, error)) error {
	prefix := id + "/"
	return r.Records(ItemKind, prefix+after, func(key string, val []byte) (bool, error) {
		dev, ok := strings.CutPrefix(key, prefix)
		if !ok {
			return false, nil
		}
		var it Item
		if err := cbor.Unmarshal(val, &it); err != nil {
			return false, fmt.Errorf("campaign item %s: %w", key, err)
		}
		it.Device = dev
		return fn(it)
	})
}
