package server

import (
	"context"
	"log/slog"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/audit/auditlog"
)

// startAuditCheckpoints starts the audit checkpointer beside the writers:
// it signs a checkpoint of the audit log every auditlog.DefaultEvery
// entries, and of the newest entry once auditlog.DefaultInterval has passed
// since the last checkpoint, with the audit key of the data directory
// (audit.key, created on first use; audit.pub is for verifiers). It stops
// with the other background work, after a last checkpoint of the tail.
func (s *Server) startAuditCheckpoints(ctx context.Context) {
	key, err := audit.InitKey(s.cfg.DataDir)
	if err != nil {
		s.log.Error("audit checkpoints disabled", slog.Any("err", err))
		return
	}
	cp, err := auditlog.NewCheckpointer(s.store, key, auditlog.WithClock(s.clock), auditlog.WithLogger(s.log))
	if err != nil {
		s.log.Error("audit checkpoints disabled", slog.Any("err", err))
		return
	}
	s.log.Info("audit checkpoints", slog.String("key", key.Public().KeyID()),
		slog.Int("every", auditlog.DefaultEvery), slog.Duration("interval", auditlog.DefaultInterval))
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		cp.Run(ctx)
	}()
}
