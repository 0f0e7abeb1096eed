package server

import (
	"context"
	"log/slog"

	"github.com/embark-iot/embark/pkg/campaign"
)

// runCampaigns starts the rotation campaign runner beside the other
// background work: it resumes the campaigns left unfinished by a previous
// run and starts those created through the admin API.
func (s *Server) runCampaigns(ctx context.Context) {
	r, err := campaign.NewRunner(s.store, s.desired, s.core,
		campaign.WithClock(s.clock),
		campaign.WithLogger(s.log),
		campaign.WithRetired(s.retiredSessions))
	if err != nil {
		s.log.Error("rotation campaigns disabled", slog.Any("err", err))
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := r.Run(ctx); err != nil {
			s.log.Error("rotation campaigns", slog.Any("err", err))
		}
	}()
}

// retiredSessions drops the live sessions of certificates superseded once
// their successors were confirmed in use: they may no longer authenticate.
func (s *Server) retiredSessions(serials []string) {
	n := 0
	if s.coap != nil {
		n += s.coap.Disconnect(serials...)
	}
	if p := s.mqtt; p != nil && p.broker != nil {
		n += p.broker.Disconnect(serials...)
	}
	if n > 0 {
		s.log.Info("dropped sessions of retired certificates", slog.Int("sessions", n), slog.Int("certificates", len(serials)))
	}
}
