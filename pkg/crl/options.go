package crl

import (
	"fmt"
	"log/slog"
	"time"
)

// DefaultValidity is the time between a CRL's thisUpdate and nextUpdate.
const DefaultValidity = 24 * time.Hour

// retryDelay is how long Run waits after a failed regeneration.
const retryDelay = 30 * time.Second

// Option configures a Publisher.
type Option func(*Publisher) error

// WithClock sets the clock used for thisUpdate, nextUpdate and expiry.
func WithClock(now func() time.Time) Option {
	return func(p *Publisher) error {
		if now == nil {
			return fmt.Errorf("crl: WithClock(nil): %w", ErrInvalidOption)
		}
		p.clock = now
		return nil
	}
}

// WithLogger sets the logger. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(p *Publisher) error {
		if l == nil {
			return fmt.Errorf("crl: WithLogger(nil): %w", ErrInvalidOption)
		}
		p.logger = l
		return nil
	}
}

// WithValidity sets the time from a CRL's thisUpdate to its nextUpdate
// (default [DefaultValidity]). It must be at least a minute.
func WithValidity(d time.Duration) Option {
	return func(p *Publisher) error {
		if d < time.Minute {
			return fmt.Errorf("crl: WithValidity(%v): %w: want at least 1m", d, ErrInvalidOption)
		}
		p.validity = d
		return nil
	}
}

// WithRefresh sets the margin before nextUpdate at which the CRL is
// regenerated (default a third of the validity). It must be positive and
// shorter than the validity.
func WithRefresh(d time.Duration) Option {
	return func(p *Publisher) error {
		if d <= 0 {
			return fmt.Errorf("crl: WithRefresh(%v): %w: want a positive duration", d, ErrInvalidOption)
		}
		p.refresh = d
		return nil
	}
}

// WithErrorHandler sets a function Run calls with each failed background
// regeneration (they are also logged). It must not block.
func WithErrorHandler(fn func(error)) Option {
	return func(p *Publisher) error {
		if fn == nil {
			return fmt.Errorf("crl: WithErrorHandler(nil): %w", ErrInvalidOption)
		}
		p.onError = fn
		return nil
	}
}
