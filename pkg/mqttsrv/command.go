package mqttsrv

import (
	"context"
	"errors"

	"github.com/eclipse/paho.golang/paho"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/onboard"
)

type change struct {
	id string
	d  desired.Desired
}

// followDesired publishes every new generation of a device's desired state
// as a signed retained command on its command topic, from a few publisher
// goroutines: a campaign over thousands of devices does not wait for the
// broker one device at a time.
func (s *Server) followDesired(ctx context.Context) {
	queue := make(chan change, 4096)
	s.cfg.Desired.OnChange(func(id string, d desired.Desired) {
		if !d.Pending() {
			return // an applied report: nothing new for the device
		}
		select {
		case queue <- change{id, d}:
		case <-ctx.Done():
		}
	})
	for range 16 {
		go func() {
			for {
				select {
				case c := <-queue:
					s.stats.Commands.Add(1)
					s.publishDesired(ctx, c.id, c.d)
				case <-ctx.Done():
					return
				}
			}
		}()
	}
}

// applied records the generation a device reports it applied.
func (s *Server) applied(ctx context.Context, deviceID string, gen uint64) error {
	_, err := s.cfg.Desired.Applied(ctx, deviceID, gen)
	if errors.Is(err, desired.ErrAhead) {
		return &onboard.Error{Reason: onboard.ReasonBadRequest, Msg: err.Error()}
	}
	if err == nil {
		s.stats.Applied.Add(1)
	}
	return err
}

func (s *Server) publishDesired(ctx context.Context, deviceID string, d desired.Desired) bool {
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
	n := 0
	err := s.cfg.Desired.Pending(ctx, func(id string, d desired.Desired) error {
		if s.publishDesired(ctx, id, d) {
			n++
		}
		return ctx.Err()
	})
	if n > 0 {
		s.log.Info("mqtt: desired state republished", "devices", n)
	}
	return err
}
