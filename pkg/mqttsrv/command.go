package mqttsrv

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store"
)

const kindDesired = "mqtt.desired"

// Desired is the desired state of one device, as Embark keeps it: each
// change makes a new generation, which the device applies once and
// reports. It is a document, not a queue: a device that was away sees only
// the latest generation when it comes back.
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

// Command changes the desired state of a device: edit sets the fields of a
// copy whose one-shot fields (Rotate, Campaign) are cleared; the change is
// committed with an audit entry, as a new generation, then published
// retained on the device's command topic. When the broker is unreachable,
// the generation is published when the connection comes back.
func (s *Server) Command(ctx context.Context, deviceID, actor string, edit func(*Desired)) (Desired, error) {
	var out Desired
	now := s.cfg.Clock()
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Device(deviceID); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %s", ErrUnknownDevice, deviceID)
			}
			return err
		}
		d, err := desiredIn(tx, deviceID)
		if err != nil {
			return err
		}
		d.Rotate, d.Campaign = false, ""
		edit(&d)
		d.Generation++
		d.Changed = now
		b, err := cbor.Marshal(d)
		if err != nil {
			return err
		}
		if err := tx.PutRecord(kindDesired, deviceID, b); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "command", DeviceID: deviceID,
			Outcome: "ok", Detail: describe(d)})
		out = d
		return err
	})
	if err != nil {
		return Desired{}, fmt.Errorf("mqttsrv: command %s: %w", deviceID, err)
	}
	s.stats.Commands.Add(1)
	s.publishDesired(ctx, deviceID, out)
	return out, nil
}

// DesiredOf returns the desired state of a device (the zero value if it
// never had a command).
func (s *Server) DesiredOf(ctx context.Context, deviceID string) (Desired, error) {
	var d Desired
	err := s.cfg.Store.View(ctx, func(r store.Reader) error {
		var err error
		d, err = desiredIn(r, deviceID)
		return err
	})
	return d, err
}

func desiredIn(r store.Reader, deviceID string) (Desired, error) {
	var d Desired
	b, err := r.Record(kindDesired, deviceID)
	if errors.Is(err, store.ErrNotFound) {
		return d, nil
	}
	if err != nil {
		return d, err
	}
	if err := cbor.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("desired state of %s: %w", deviceID, err)
	}
	return d, nil
}

func describe(d Desired) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("generation %d", d.Generation))
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

// applied records the generation a device reports it applied.
func (s *Server) applied(ctx context.Context, deviceID string, gen uint64) error {
	now := s.cfg.Clock()
	err := s.cfg.Store.Update(ctx, func(tx store.Tx) error {
		d, err := desiredIn(tx, deviceID)
		if err != nil {
			return err
		}
		switch {
		case gen > d.Generation:
			return &onboard.Error{Reason: onboard.ReasonBadRequest,
				Msg: fmt.Sprintf("generation %d applied, but the latest is %d", gen, d.Generation)}
		case gen <= d.Applied:
			return nil // a late or repeated report changes nothing
		}
		d.Applied, d.AppliedAt = gen, now
		b, err := cbor.Marshal(d)
		if err != nil {
			return err
		}
		if err := tx.PutRecord(kindDesired, deviceID, b); err != nil {
			return err
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: "device", Action: "command applied", DeviceID: deviceID,
			Outcome: "ok", Detail: fmt.Sprintf("generation %d", gen)})
		return err
	})
	if err == nil {
		s.stats.Applied.Add(1)
	}
	return err
}

func (s *Server) publishDesired(ctx context.Context, deviceID string, d Desired) bool {
	b, err := s.cfg.Responder.SignCommand(mqttwire.Command{Device: deviceID, Generation: d.Generation, Seq: s.nextSeq(),
		Rotate: d.Rotate, Campaign: d.Campaign, Zone: d.Zone, Revoked: d.Revoked, Reason: d.Reason})
	if err != nil {
		s.log.Error("mqtt: sign command", "device", deviceID, "err", err)
		return false
	}
	return s.publish(ctx, &paho.Publish{QoS: 1, Retain: true, Topic: mqttwire.CommandTopic(deviceID), Payload: b})
}

// republish publishes the desired state of every device that has not
// applied it yet: a broker that lost its retained messages (the embedded
// one restarts with Embark) learns them again.
func (s *Server) republish(ctx context.Context) error {
	const page = 1000
	after := ""
	n := 0
	for {
		type item struct {
			id string
			d  Desired
		}
		var items []item
		err := s.cfg.Store.View(ctx, func(r store.Reader) error {
			return r.Records(kindDesired, after, func(key string, val []byte) (bool, error) {
				after = key
				var d Desired
				if err := cbor.Unmarshal(val, &d); err != nil {
					return false, fmt.Errorf("desired state of %s: %w", key, err)
				}
				if d.Pending() {
					items = append(items, item{key, d})
				}
				return len(items) < page, nil
			})
		})
		if err != nil {
			return err
		}
		for _, it := range items {
			if s.publishDesired(ctx, it.id, it.d) {
				n++
			}
		}
		if len(items) < page {
			break
		}
	}
	if n > 0 {
		s.log.Info("mqtt: desired state republished", "devices", n)
	}
	return nil
}
