package crl

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pki"
)

// Publisher builds, caches and refreshes the CRL of one issuing CA. It is
// safe for concurrent use.
type Publisher struct {
	st       store.Store
	ca       *pki.CA
	clock    func() time.Time
	logger   *slog.Logger
	validity time.Duration
	refresh  time.Duration
	onError  func(error)

	// after is the timer Run waits on; tests replace it to run without
	// sleeping.
	after func(time.Duration) <-chan time.Time
	// regenerated, if set, is called after each regeneration by Run.
	regenerated func(*big.Int, error)

	trigger chan struct{} // capacity 1: pending triggers coalesce
	genMu   sync.Mutex    // serialises regenerations

	mu         sync.RWMutex
	der        []byte
	number     *big.Int
	nextUpdate time.Time
}

// New returns a Publisher of ca's CRL over the revocations in st. It builds
// no CRL until Current, Regenerate or Run is called.
func New(st store.Store, ca *pki.CA, opts ...Option) (*Publisher, error) {
	if st == nil || ca == nil {
		return nil, fmt.Errorf("crl: new: nil store or CA: %w", ErrInvalidOption)
	}
	p := &Publisher{
		st:       st,
		ca:       ca,
		clock:    time.Now,
		logger:   slog.New(slog.DiscardHandler),
		validity: DefaultValidity,
		after:    time.After,
		trigger:  make(chan struct{}, 1),
	}
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o(p); err != nil {
			return nil, err
		}
	}
	if p.refresh == 0 {
		p.refresh = p.validity / 3
	}
	if p.refresh >= p.validity {
		return nil, fmt.Errorf("crl: new: refresh %v not shorter than validity %v: %w", p.refresh, p.validity, ErrInvalidOption)
	}
	return p, nil
}

// Current returns the cached DER CRL, regenerating it first if there is none
// or it has less than the refresh margin left before its nextUpdate. The
// returned slice is shared and must not be modified.
func (p *Publisher) Current(ctx context.Context) ([]byte, error) {
	if der, ok := p.fresh(); ok {
		return der, nil
	}
	p.genMu.Lock()
	defer p.genMu.Unlock()
	// Another caller may have regenerated while this one waited.
	if der, ok := p.fresh(); ok {
		return der, nil
	}
	return p.regenerateLocked(ctx)
}

// fresh returns the cached CRL if it does not need regenerating yet.
func (p *Publisher) fresh() ([]byte, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.der == nil || !p.clock().Before(p.nextUpdate.Add(-p.refresh)) {
		return nil, false
	}
	return p.der, true
}

// Number returns the CRL number of the cached CRL, or nil if none was built.
func (p *Publisher) Number() *big.Int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.number == nil {
		return nil
	}
	return new(big.Int).Set(p.number)
}

// NextUpdate returns the nextUpdate of the cached CRL, or the zero time.
func (p *Publisher) NextUpdate() time.Time {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.nextUpdate
}

// Trigger asks Run to regenerate the CRL soon, typically after revocations
// have committed. It never blocks; triggers pending together coalesce into
// one regeneration.
func (p *Publisher) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Regenerate builds a new CRL now: it reads every revocation, drops and
// deletes those whose certificate has expired, takes the next CRL number,
// signs the list and caches it. The returned slice is shared and must not be
// modified.
func (p *Publisher) Regenerate(ctx context.Context) ([]byte, error) {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	return p.regenerateLocked(ctx)
}

func (p *Publisher) regenerateLocked(ctx context.Context) ([]byte, error) {
	now := p.clock().UTC().Truncate(time.Second)

	var (
		entries []x509.RevocationListEntry
		expired []string
	)
	err := p.st.View(ctx, func(r store.Reader) error {
		entries, expired = entries[:0], expired[:0]
		return r.Records(KindRevoked, "", func(key string, val []byte) (bool, error) {
			serial, err := parseSerial(key)
			if err != nil {
				return false, fmt.Errorf("%w: key: %w", ErrCorruptRecord, err)
			}
			rev, err := decodeRevocation(val)
			if err != nil {
				return false, fmt.Errorf("%s: %w", key, err)
			}
			if rev.NotAfter.Before(now) {
				expired = append(expired, key)
				return true, nil
			}
			entries = append(entries, x509.RevocationListEntry{
				SerialNumber:   serial,
				RevocationTime: rev.RevokedAt,
				ReasonCode:     rev.Reason,
			})
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("crl: regenerate: read revocations: %w", err)
	}

	var number *big.Int
	err = p.st.Update(ctx, func(tx store.Tx) error {
		number = new(big.Int)
		switch val, err := tx.Record(KindMeta, metaNumber); {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			if _, ok := number.SetString(string(val), 10); !ok || number.Sign() < 0 {
				return fmt.Errorf("%w: CRL number %q", ErrCorruptRecord, val)
			}
		}
		number.Add(number, big.NewInt(1))
		if err := tx.PutRecord(KindMeta, metaNumber, []byte(number.String())); err != nil {
			return err
		}
		for _, key := range expired {
			if err := tx.DeleteRecord(KindRevoked, key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("crl: regenerate: next number: %w", err)
	}

	next := now.Add(p.validity)
	der, err := p.ca.CreateCRL(entries, number, now, next)
	if err != nil {
		return nil, fmt.Errorf("crl: regenerate: %w", err)
	}
	p.mu.Lock()
	p.der, p.number, p.nextUpdate = der, number, next
	p.mu.Unlock()
	p.logger.Info("CRL regenerated", "number", number.String(), "entries", len(entries),
		"dropped_expired", len(expired), "next_update", next, "bytes", len(der))
	return der, nil
}

// Run keeps the CRL fresh until ctx is done: it regenerates when the cached
// CRL reaches its refresh margin and soon after each Trigger. A failed
// regeneration is logged, reported to the error handler and retried after
// 30 seconds.
func (p *Publisher) Run(ctx context.Context) {
	for {
		wait := time.Duration(0)
		if _, ok := p.fresh(); ok {
			wait = p.NextUpdate().Add(-p.refresh).Sub(p.clock())
		}
		if wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-p.trigger:
			case <-p.after(wait):
			}
		} else if ctx.Err() != nil {
			return
		}
		number, err := p.runOnce(ctx)
		if p.regenerated != nil {
			p.regenerated(number, err)
		}
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		p.logger.Error("CRL regeneration failed", "err", err)
		if p.onError != nil {
			p.onError(err)
		}
		select {
		case <-ctx.Done():
			return
		case <-p.after(retryDelay):
		}
	}
}

func (p *Publisher) runOnce(ctx context.Context) (*big.Int, error) {
	// Triggers that came before this regeneration starts are served by it.
	select {
	case <-p.trigger:
	default:
	}
	if _, err := p.Regenerate(ctx); err != nil {
		return nil, err
	}
	return p.Number(), nil
}
