package pki

import (
	"fmt"
	"log/slog"
	"time"
)

// config holds what Options set.
type config struct {
	clock  func() time.Time
	logger *slog.Logger
	name   string
	tmpl   *ldevidTemplate // nil: build LDevIDs directly
	// fail, if set, is called at each step of Rollover; an error stops it
	// there, as a crash would (tests only).
	fail func(step string) error
}

// Option configures a CA.
type Option func(*config) error

func newConfig(opts []Option) (*config, error) {
	c := &config{
		clock:  time.Now,
		logger: slog.New(slog.DiscardHandler),
		name:   "Embark",
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// WithClock sets the clock used for validity periods and checks.
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("pki: WithClock(nil): %w", ErrInvalidOption)
		}
		c.clock = now
		return nil
	}
}

// WithLogger sets the logger. The default discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("pki: WithLogger(nil): %w", ErrInvalidOption)
		}
		c.logger = l
		return nil
	}
}

// WithName sets the name a new CA is created with: name "Embark" (the
// default) gives "Embark Root CA" and "Embark Intermediate CA". It has no
// effect when an existing CA is loaded.
func WithName(name string) Option {
	return func(c *config) error {
		if name == "" {
			return fmt.Errorf("pki: WithName(\"\"): %w", ErrInvalidOption)
		}
		c.name = name
		return nil
	}
}

// WithTemplate sets an x509util (step-ca style) template for LDevIDs. The
// template is parsed and tried once here; see the package documentation for
// the data it receives and the rules its result must follow.
func WithTemplate(text string) Option {
	return func(c *config) error {
		t, err := compileTemplate(text)
		if err != nil {
			return err
		}
		c.tmpl = t
		return nil
	}
}
