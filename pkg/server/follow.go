package server

import (
	"context"
	"log/slog"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// followRevoked acts on certificates just revoked (or superseded): the
// embedded broker closes their connections at once, and a device that is
// itself revoked or decommissioned gets a new desired-state generation
// saying so, which every transport tells it (MQTT command, CoAP status).
// A superseded certificate is routine and needs no command.
func (s *Server) followRevoked(serials []string) {
	if p := s.mqtt; p != nil && p.broker != nil {
		if n := p.broker.Disconnect(serials...); n > 0 {
			s.log.Info("dropped broker connections of revoked certificates", slog.Int("connections", n))
		}
	}
	ctx := context.Background()
	ids := map[string]device.Device{}
	_ = s.store.View(ctx, func(r store.Reader) error {
		for _, serial := range serials {
			c, err := r.Certificate(serial)
			if err != nil {
				continue
			}
			if d, err := r.Device(c.DeviceID); err == nil {
				ids[d.ID] = d
			}
		}
		return nil
	})
	for id, d := range ids {
		if d.State != device.Revoked && d.State != device.Decommissioned {
			continue
		}
		if cur, err := s.desired.Of(ctx, id); err == nil && cur.Revoked {
			continue
		}
		_, err := s.desired.Set(ctx, id, "system", func(ds *desired.Desired) {
			ds.Revoked, ds.Reason = true, "device "+string(d.State)
		})
		if err != nil {
			s.log.Warn("revoked: desired state", slog.String("device", id), slog.Any("err", err))
		}
	}
}

// followMoved follows devices to their new zone: the embedded broker
// recomputes their grants and each device is told its zone.
func (s *Server) followMoved(ctx context.Context, ids []string) {
	for _, id := range ids {
		if p := s.mqtt; p != nil && p.broker != nil {
			p.broker.Refresh(id)
		}
		var d device.Device
		if err := s.store.View(ctx, func(r store.Reader) error {
			var err error
			d, err = r.Device(id)
			return err
		}); err != nil {
			continue
		}
		cur, err := s.desired.Of(ctx, id)
		if err != nil || cur.Zone == d.Zone || d.State == device.Revoked || d.State == device.Decommissioned {
			continue
		}
		if _, err := s.desired.Set(ctx, id, "policy", func(ds *desired.Desired) { ds.Zone = d.Zone }); err != nil {
			s.log.Warn("zone change: desired state", slog.String("device", id), slog.Any("err", err))
		}
	}
}
