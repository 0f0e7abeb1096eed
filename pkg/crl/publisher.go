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

// Publisher builds, caches and refreshes the CRLs of the issuing CA: one
// CRL per intermediate that is not retired (see [pki.CA.Issuers]). It is
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

	mu   sync.RWMutex
	crls map[string]*signedCRL // by issuer ID
}

// signedCRL is one issuer's cached CRL.
type signedCRL struct {
	der        []byte
	number     *big.Int
	nextUpdate time.Time
}

// New returns a Publisher of ca's CRLs over the revocations in st. It
// builds no CRL until Current, Regenerate or Run is called.
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
		crls:     map[string]*signedCRL{},
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

// Current returns the cached DER CRL of the active intermediate; see
// [Publisher.CurrentFor].
func (p *Publisher) Current(ctx context.Context) ([]byte, error) {
	return p.CurrentFor(ctx, "")
}

// CurrentFor returns the cached DER CRL of the intermediate with this ID
// (its subject key identifier in hex, which is the authority key
// identifier of the certificates it issued; a unique prefix of at least 8
// digits will do), or of the active intermediate if issuer is empty. It
// regenerates the CRLs first if that one is missing or has less than the
// refresh margin left before its nextUpdate. An unknown or retired
// intermediate has no CRL (ErrUnknownIssuer). The returned slice is shared
// and must not be modified.
func (p *Publisher) CurrentFor(ctx context.Context, issuer string) ([]byte, error) {
	id, err := p.issuerID(issuer)
	if err != nil {
		return nil, err
	}
	if c, ok := p.fresh(id); ok {
		return c.der, nil
	}
	p.genMu.Lock()
	defer p.genMu.Unlock()
	// Another caller may have regenerated while this one waited.
	if c, ok := p.fresh(id); ok {
		return c.der, nil
	}
	if err := p.regenerateLocked(ctx); err != nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	c, ok := p.crls[id]
	if !ok {
		// Retired while this call waited.
		return nil, fmt.Errorf("crl: issuer %s: %w", id, ErrUnknownIssuer)
	}
	return c.der, nil
}

// issuerID resolves an issuer selector to the ID of an intermediate that
// publishes a CRL.
func (p *Publisher) issuerID(issuer string) (string, error) {
	if issuer == "" {
		return p.ca.ActiveIssuer().ID, nil
	}
	is, err := p.ca.Issuer(issuer)
	if err != nil {
		return "", fmt.Errorf("crl: %w: %w", ErrUnknownIssuer, err)
	}
	if is.State == pki.IssuerRetired {
		return "", fmt.Errorf("crl: issuer %s is retired: %w", is.ID, ErrUnknownIssuer)
	}
	return is.ID, nil
}

// fresh returns the cached CRL of an issuer if it does not need
// regenerating yet.
func (p *Publisher) fresh(id string) (*signedCRL, bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	c, ok := p.crls[id]
	if !ok || !p.clock().Before(c.nextUpdate.Add(-p.refresh)) {
		return nil, false
	}
	return c, true
}

// due returns how long until a CRL needs regenerating: 0 if one is missing
// or due now.
func (p *Publisher) due() time.Duration {
	now := p.clock()
	p.mu.RLock()
	defer p.mu.RUnlock()
	var wait time.Duration = -1
	for _, is := range p.ca.Issuers() {
		if is.State == pki.IssuerRetired {
			continue
		}
		c, ok := p.crls[is.ID]
		if !ok {
			return 0
		}
		d := c.nextUpdate.Add(-p.refresh).Sub(now)
		if wait < 0 || d < wait {
			wait = d
		}
	}
	return max(wait, 0)
}

// Number returns the CRL number of the active intermediate's cached CRL,
// or nil if none was built.
func (p *Publisher) Number() *big.Int {
	id := p.ca.ActiveIssuer().ID
	p.mu.RLock()
	defer p.mu.RUnlock()
	c, ok := p.crls[id]
	if !ok {
		return nil
	}
	return new(big.Int).Set(c.number)
}

// NextUpdate returns the nextUpdate of the active intermediate's cached
// CRL, or the zero time.
func (p *Publisher) NextUpdate() time.Time {
	id := p.ca.ActiveIssuer().ID
	p.mu.RLock()
	defer p.mu.RUnlock()
	if c, ok := p.crls[id]; ok {
		return c.nextUpdate
	}
	return time.Time{}
}

// Trigger asks Run to regenerate the CRLs soon, typically after
// revocations have committed or the CA rolled over. It never blocks;
// triggers pending together coalesce into one regeneration.
func (p *Publisher) Trigger() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Regenerate builds new CRLs now, one per intermediate that is not retired:
// it reads every revocation, drops and deletes those whose certificate has
// expired, takes the next CRL number of each intermediate, signs each list
// and caches it. It returns the active intermediate's CRL; the returned
// slice is shared and must not be modified.
func (p *Publisher) Regenerate(ctx context.Context) ([]byte, error) {
	p.genMu.Lock()
	defer p.genMu.Unlock()
	if err := p.regenerateLocked(ctx); err != nil {
		return nil, err
	}
	id := p.ca.ActiveIssuer().ID
	p.mu.RLock()
	defer p.mu.RUnlock()
	if c, ok := p.crls[id]; ok {
		return c.der, nil
	}
	return nil, fmt.Errorf("crl: regenerate: the active intermediate changed meanwhile: %w", ErrUnknownIssuer)
}

func (p *Publisher) regenerateLocked(ctx context.Context) error {
	now := p.clock().UTC().Truncate(time.Second)
	var issuers []pki.Issuer
	for _, is := range p.ca.Issuers() {
		if is.State != pki.IssuerRetired {
			issuers = append(issuers, is)
		}
	}

	var (
		byIssuer map[string][]x509.RevocationListEntry
		common   []x509.RevocationListEntry // of no known issuer: on every CRL
		expired  []string
	)
	err := p.st.View(ctx, func(r store.Reader) error {
		byIssuer, common, expired = map[string][]x509.RevocationListEntry{}, common[:0], expired[:0]
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
			e := x509.RevocationListEntry{SerialNumber: serial, RevocationTime: rev.RevokedAt, ReasonCode: rev.Reason}
			if rev.Issuer == "" {
				common = append(common, e)
			} else {
				byIssuer[rev.Issuer] = append(byIssuer[rev.Issuer], e)
			}
			return true, nil
		})
	})
	if err != nil {
		return fmt.Errorf("crl: regenerate: read revocations: %w", err)
	}

	numbers := make([]*big.Int, len(issuers))
	err = p.st.Update(ctx, func(tx store.Tx) error {
		for i, is := range issuers {
			key := numberKey(is)
			n := new(big.Int)
			switch val, err := tx.Record(KindMeta, key); {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return err
			default:
				if _, ok := n.SetString(string(val), 10); !ok || n.Sign() < 0 {
					return fmt.Errorf("%w: CRL number %q of %s", ErrCorruptRecord, val, key)
				}
			}
			n.Add(n, big.NewInt(1))
			if err := tx.PutRecord(KindMeta, key, []byte(n.String())); err != nil {
				return err
			}
			numbers[i] = n
		}
		for _, key := range expired {
			if err := tx.DeleteRecord(KindRevoked, key); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("crl: regenerate: next number: %w", err)
	}

	next := now.Add(p.validity)
	signed := make(map[string]*signedCRL, len(issuers))
	for i, is := range issuers {
		entries := common
		if own := byIssuer[is.ID]; len(own) > 0 {
			entries = append(append(make([]x509.RevocationListEntry, 0, len(own)+len(common)), own...), common...)
		}
		der, err := p.ca.CreateCRLFor(is.ID, entries, numbers[i], now, next)
		if err != nil {
			return fmt.Errorf("crl: regenerate: %w", err)
		}
		signed[is.ID] = &signedCRL{der: der, number: numbers[i], nextUpdate: next}
		p.logger.Info("CRL regenerated", "issuer", is.ID, "generation", is.Generation, "number", numbers[i].String(),
			"entries", len(entries), "next_update", next, "bytes", len(der))
	}
	p.mu.Lock()
	p.crls = signed
	p.mu.Unlock()
	if len(expired) > 0 {
		p.logger.Info("expired revocations dropped", "count", len(expired))
	}
	return nil
}

// numberKey is where an intermediate's last CRL number is kept: "number"
// for the first generation (as before rollovers existed), "number/ID" for
// the others.
func numberKey(is pki.Issuer) string {
	if is.Generation == 1 {
		return metaNumber
	}
	return metaNumber + "/" + is.ID
}

// Run keeps the CRLs fresh until ctx is done: it regenerates when a cached
// CRL reaches its refresh margin (or an intermediate has none yet) and soon
// after each Trigger. A failed regeneration is logged, reported to the
// error handler and retried after 30 seconds.
func (p *Publisher) Run(ctx context.Context) {
	for {
		if wait := p.due(); wait > 0 {
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
