package onboard

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/idevid"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pki"
)

// CA is what the core needs of the certificate authority (package pki).
// After a CA rollover it has several intermediates: the active one issues,
// the previous ones still verify what they issued until they are retired.
type CA interface {
	IssueLDevID(pki.LDevIDRequest) (*x509.Certificate, error)
	VerifyLDevID(leaf *x509.Certificate, now time.Time) error
	Intermediate() *x509.Certificate
	Chain() []*x509.Certificate
	// IssuedHere reports whether leaf names one of the CA's intermediates
	// (any generation) as its issuer, without a signature check.
	IssuedHere(leaf *x509.Certificate) bool
	// ChainOf returns the CA chain of a certificate issued here,
	// intermediate first and root last.
	ChainOf(leaf *x509.Certificate) []*x509.Certificate
}

// Request is an enrollment or renewal request as a transport received it.
type Request struct {
	// Chain is the client certificate chain the peer presented (leaf
	// first), after the transport checked the peer holds the leaf's key
	// (the DTLS/TLS CertificateVerify). The core verifies the chain.
	Chain []*x509.Certificate
	// CSR is the DER PKCS#10 request.
	CSR []byte
	// Transport names the transport: "coaps", "coaps+tcp", "mqtt".
	Transport string
	// Remote is the peer address, for the audit log.
	Remote string
	// DeviceID, if set, is the device the transport addressed (the MQTT
	// topic namespace): the chain must identify this device, or the request
	// is refused (ReasonWrongDevice) before anything changes.
	DeviceID string
}

// Result is the answer to a successful request.
type Result struct {
	Certificate *x509.Certificate
	// Chain is the CA chain of the certificate, intermediate first.
	Chain    []*x509.Certificate
	DeviceID string
	State    device.State
	Zone     string
	// Replayed is set when the request repeated one already answered: the
	// certificate is the one issued then.
	Replayed bool
}

// Service is the onboarding core. It is safe for concurrent use.
type Service struct {
	store        store.Store
	ca           CA
	decider      Decider
	clock        func() time.Time
	log          *slog.Logger
	allowExpired bool
	retryAfter   time.Duration
	holdRetry    time.Duration
	sem          chan struct{}
	verifier     atomic.Pointer[idevid.Verifier]
	owner        *owner.Identity
	revHook      RevocationHook
}

// Option configures a Service.
type Option func(*Service) error

// WithClock sets the clock (tests use a fake one).
func WithClock(now func() time.Time) Option {
	return func(s *Service) error { s.clock = now; return nil }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(s *Service) error { s.log = l; return nil }
}

// WithDecider sets the policy.
func WithDecider(d Decider) Option {
	return func(s *Service) error { s.decider = d; return nil }
}

// WithAllowExpiredIDevID lets expired IDevID chains through to the decider
// as a fact (Input.IDevIDExpired) instead of refusing them outright.
func WithAllowExpiredIDevID(allow bool) Option {
	return func(s *Service) error { s.allowExpired = allow; return nil }
}

// WithMaxInFlight bounds the requests processed at once; beyond it requests
// are answered "overloaded" with retryAfter.
func WithMaxInFlight(n int, retryAfter time.Duration) Option {
	return func(s *Service) error {
		if n < 1 || retryAfter <= 0 {
			return fmt.Errorf("onboard: max in flight %d / retry after %s: both must be positive", n, retryAfter)
		}
		s.sem = make(chan struct{}, n)
		s.retryAfter = retryAfter
		return nil
	}
}

// WithHoldRetry sets how long a held device is told to wait before asking again.
func WithHoldRetry(d time.Duration) Option {
	return func(s *Service) error { s.holdRetry = d; return nil }
}

// WithOwner sets the operator's owner identity: devices whose provenance
// names another owner are refused (ReasonWrongOwner). Without it, ownership
// is not checked.
func WithOwner(id *owner.Identity) Option {
	return func(s *Service) error { s.owner = id; return nil }
}

// New returns a Service over a store and a CA. It loads the trusted
// manufacturers from the store.
func New(ctx context.Context, st store.Store, ca CA, opts ...Option) (*Service, error) {
	s := &Service{
		store:      st,
		ca:         ca,
		decider:    StaticDecider{Zone: "default", Lifetime: 30 * 24 * time.Hour},
		clock:      time.Now,
		log:        slog.New(slog.DiscardHandler),
		retryAfter: 2 * time.Second,
		holdRetry:  60 * time.Second,
		sem:        make(chan struct{}, 1024),
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if err := s.ReloadTrust(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// ReloadTrust rebuilds the IDevID verifier from the manufacturers in the
// store. Call it after the set of trusted manufacturers changed.
func (s *Service) ReloadTrust(ctx context.Context) error {
	var mfrs []device.Manufacturer
	if err := s.store.View(ctx, func(r store.Reader) error {
		var err error
		mfrs, err = r.Manufacturers()
		return err
	}); err != nil {
		return fmt.Errorf("onboard: load manufacturers: %w", err)
	}
	v, err := idevid.New(mfrs, idevid.AllowExpired(s.allowExpired))
	if err != nil {
		return fmt.Errorf("onboard: %w", err)
	}
	s.verifier.Store(v)
	return nil
}

func (s *Service) admit() (func(), error) {
	select {
	case s.sem <- struct{}{}:
		return func() { <-s.sem }, nil
	default:
		return nil, &Error{Reason: ReasonOverloaded, Msg: "too many requests in progress", RetryAfter: s.retryAfter}
	}
}

// issuedHere reports whether leaf claims to come from one of our
// intermediates, the active one or one of a previous generation (issuer
// name and key identifier), without a signature check.
func (s *Service) issuedHere(leaf *x509.Certificate) bool {
	return s.ca.IssuedHere(leaf)
}

// maxAttempts bounds the compare-and-swap retries of one request.
const maxAttempts = 5

// Enroll issues an LDevID to a device that authenticates with its IDevID.
func (s *Service) Enroll(ctx context.Context, req Request) (*Result, error) {
	release, err := s.admit()
	if err != nil {
		return nil, err
	}
	defer release()
	now := s.clock()
	if len(req.Chain) == 0 {
		return nil, refuse(ReasonUnauthenticated, "enrollment requires the device's IDevID as client certificate")
	}
	leaf := req.Chain[0]
	if s.issuedHere(leaf) {
		return nil, refuse(ReasonWrongCredential, "an LDevID cannot enroll: renew with it at /sren, or enroll with the IDevID")
	}
	csr, csrKey, err := parseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	vr, err := s.verifier.Load().Verify(req.Chain, now)
	if err != nil {
		return nil, chainError(err)
	}
	idevKey := keyFingerprint(leaf.RawSubjectPublicKeyInfo)

	for attempt := 0; attempt < maxAttempts; attempt++ {
		var dev device.Device
		var certs []device.Certificate
		var facts provenance.View
		err := s.store.View(ctx, func(r store.Reader) error {
			var err error
			if dev, err = r.DeviceByIDevIDKey(idevKey); err != nil {
				return err
			}
			if certs, err = r.CertificatesOf(dev.ID); err != nil {
				return err
			}
			facts, err = provenance.FactsOf(r, dev, s.owner, provenance.NewCache())
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return nil, s.refuseUnknown(ctx, vr.Manufacturer, leaf, idevKey, req, now)
		}
		if err != nil {
			return nil, s.internal("enroll: read registry", err)
		}
		if req.DeviceID != "" && req.DeviceID != dev.ID {
			return nil, refuse(ReasonWrongDevice, "the credential belongs to %s, the request addresses %s", dev.ID, req.DeviceID)
		}
		if dev.Provenance.Manufacturer != vr.Manufacturer {
			return nil, refuse(ReasonUntrustedChain, "IDevID chains to manufacturer %q, the manifest names %q", vr.Manufacturer, dev.Provenance.Manufacturer)
		}
		if err := s.stateAllows(dev); err != nil {
			return nil, err
		}
		if err := s.checkOwner(ctx, dev, req, now); err != nil {
			return nil, err
		}
		rep, mismatch, err := reportedBy(csr, dev.Provenance)
		if err != nil {
			return nil, err
		}
		cur := find(certs, dev.Current)
		if cur != nil && cur.KeySHA256 == csrKey && cur.Status.Usable() && cur.Kind == device.KindEnroll {
			return s.result(dev, cur, true)
		}
		if live := inUse(certs); live != nil {
			// The device has a live LDevID yet asks again with a new key: a
			// factory reset, or a clone. An operator (or policy) decides.
			err := s.park(ctx, dev, device.EvHold, "reonboard", now,
				fmt.Sprintf("re-onboarding: new key while LDevID %s is in use", live.Serial), "", req)
			if err != nil {
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				return nil, s.internal("enroll: hold", err)
			}
			return nil, &Error{Reason: ReasonHeld, Msg: "device re-onboarding waits for an operator's approval", RetryAfter: s.holdRetry}
		}
		dec, err := s.decide(ctx, Input{Device: dev, Transport: req.Transport, IDevIDExpired: vr.Expired, Now: now,
			Reported: rep, FirmwareMismatch: mismatch, Facts: facts})
		if err != nil {
			return nil, err
		}
		if res, err, done := s.applyRefusal(ctx, dev, dec, "enroll", now, req); done {
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			return res, err
		}
		cert, err := s.ca.IssueLDevID(pki.LDevIDRequest{PublicKey: csr.PublicKey, DeviceID: dev.ID, Lifetime: dec.Lifetime})
		if err != nil {
			return nil, s.internal("enroll: issue", err)
		}
		rec := certRecord(cert, dev.ID, device.KindEnroll, "", csrKey)
		committed, err := s.commitIssued(ctx, dev, rec, dec, now, "enroll", detail(req, vr, mismatch, facts), rep, req, func(tx store.Tx, d *device.Device) error {
			// A new enrollment replaces every certificate still usable.
			all, err := tx.CertificatesOf(d.ID)
			if err != nil {
				return err
			}
			for _, c := range all {
				if c.Status.Usable() {
					c.Status, c.StatusAt, c.Reason = device.CertSuperseded, now, "superseded by enrollment "+rec.Serial
					if err := tx.PutCertificate(c); err != nil {
						return err
					}
				}
			}
			d.Current, d.Previous = rec.Serial, ""
			d.Enrollments++
			return nil
		})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, s.internal("enroll: commit", err)
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "enrolled", slog.String("device", dev.ID), slog.String("cert", rec.Serial),
			slog.String("zone", committed.Zone), slog.String("transport", req.Transport))
		return &Result{Certificate: cert, Chain: s.ca.ChainOf(cert), DeviceID: committed.ID, State: committed.State, Zone: committed.Zone}, nil
	}
	return nil, &Error{Reason: ReasonOverloaded, Msg: "concurrent requests for this device; retry", RetryAfter: s.retryAfter}
}

// Renew issues a new LDevID to a device that authenticates with its current
// LDevID (or its previous one, while the current was never seen in use).
func (s *Service) Renew(ctx context.Context, req Request) (*Result, error) {
	release, err := s.admit()
	if err != nil {
		return nil, err
	}
	defer release()
	now := s.clock()
	if len(req.Chain) == 0 {
		return nil, refuse(ReasonUnauthenticated, "renewal requires the device's LDevID as client certificate")
	}
	leaf := req.Chain[0]
	if !s.issuedHere(leaf) {
		if _, err := s.verifier.Load().Verify(req.Chain, now); err == nil || errors.Is(err, idevid.ErrExpired) {
			return nil, refuse(ReasonWrongCredential, "an IDevID cannot renew: enroll with it at /sen")
		}
		return nil, refuse(ReasonUntrustedChain, "client certificate was not issued by this CA")
	}
	csr, csrKey, err := parseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	expired, err := s.verifyLDevID(leaf, now)
	if err != nil {
		switch {
		case errors.Is(err, pki.ErrNotYetValid):
			return nil, refuseErr(ReasonNotYetValid, err, "LDevID not valid before %s", leaf.NotBefore.UTC().Format(time.RFC3339))
		}
		return nil, refuseErr(ReasonUntrustedChain, err, "LDevID does not verify: %v", err)
	}
	serial := serialHex(leaf)

	for attempt := 0; attempt < maxAttempts; attempt++ {
		var dev device.Device
		var presented device.Certificate
		var certs []device.Certificate
		var facts provenance.View
		err := s.store.View(ctx, func(r store.Reader) error {
			var err error
			if presented, err = r.Certificate(serial); err != nil {
				return err
			}
			if dev, err = r.Device(presented.DeviceID); err != nil {
				return err
			}
			if certs, err = r.CertificatesOf(dev.ID); err != nil {
				return err
			}
			facts, err = provenance.FactsOf(r, dev, s.owner, provenance.NewCache())
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return nil, refuse(ReasonNotCurrent, "certificate %s is not in the registry", serial)
		}
		if err != nil {
			return nil, s.internal("renew: read registry", err)
		}
		if req.DeviceID != "" && req.DeviceID != dev.ID {
			return nil, refuse(ReasonWrongDevice, "the credential belongs to %s, the request addresses %s", dev.ID, req.DeviceID)
		}
		if err := s.stateAllows(dev); err != nil {
			return nil, err
		}
		if expired {
			if err := inGrace(leaf, dev, now); err != nil {
				return nil, err
			}
		}
		switch presented.Status {
		case device.CertRevoked:
			return nil, refuse(ReasonRevoked, "certificate %s was revoked: %s", serial, presented.Reason)
		case device.CertSuperseded:
			// A certificate that was in use, presented from one endpoint
			// while its successor is in use from another: two LDevIDs of
			// one device alive at once. A device that rebooted before it
			// ever used a certificate cannot present it, so it is never
			// taken for a clone.
			if live := inUse(certs); presented.SeenFrom != "" && live != nil && live.Serial != serial &&
				host(live.SeenFrom) != host(req.Remote) {
				msg := fmt.Sprintf("clone suspected: LDevID %s presented from %s while %s is in use from %s",
					serial, req.Remote, live.Serial, live.SeenFrom)
				if err := s.suspectClone(ctx, dev.ID, msg, now); err != nil {
					return nil, err
				}
				return nil, refuse(ReasonCloneSuspected, "two LDevIDs of this device are in use from different endpoints; device held for an operator")
			}
			return nil, refuse(ReasonNotCurrent, "certificate %s was superseded and may no longer renew", serial)
		}
		for i := range certs {
			c := &certs[i]
			if c.Predecessor == serial && c.KeySHA256 == csrKey && c.Status.Usable() {
				return s.result(dev, c, true)
			}
		}
		rep, mismatch, err := reportedBy(csr, dev.Provenance)
		if err != nil {
			return nil, err
		}
		cur := find(certs, dev.Current)
		isCurrent := serial == dev.Current
		isPrevious := serial == dev.Previous && cur != nil && cur.Status == device.CertIssued
		if !isCurrent && !isPrevious {
			return nil, refuse(ReasonNotCurrent, "certificate %s is neither the current LDevID nor its unconfirmed predecessor", serial)
		}
		dec, err := s.decide(ctx, Input{Device: dev, Renewal: true, Transport: req.Transport, Now: now,
			Reported: rep, FirmwareMismatch: mismatch, Facts: facts})
		if err != nil {
			return nil, err
		}
		if res, err, done := s.applyRefusal(ctx, dev, dec, "renew", now, req); done {
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			return res, err
		}
		cert, err := s.ca.IssueLDevID(pki.LDevIDRequest{PublicKey: csr.PublicKey, DeviceID: dev.ID, Lifetime: dec.Lifetime})
		if err != nil {
			return nil, s.internal("renew: issue", err)
		}
		rec := certRecord(cert, dev.ID, device.KindRenew, serial, csrKey)
		committed, err := s.commitIssued(ctx, dev, rec, dec, now, "renew", detail(req, idevid.Result{}, mismatch, facts), rep, req, func(tx store.Tx, d *device.Device) error {
			p, err := tx.Certificate(serial)
			if err != nil {
				return err
			}
			if p.Status == device.CertIssued {
				p.Status, p.StatusAt = device.CertInUse, now
			}
			p.SeenFrom = req.Remote
			if err := tx.PutCertificate(p); err != nil {
				return err
			}
			// The one certificate besides the presented one that could
			// still renew: the unconfirmed current (when the previous
			// renews) or the old previous (when the current renews).
			other := d.Previous
			if isPrevious {
				other = d.Current
			}
			if other != "" && other != serial {
				o, err := tx.Certificate(other)
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				if err == nil && o.Status.Usable() {
					o.Status, o.StatusAt, o.Reason = device.CertSuperseded, now, "superseded by renewal "+rec.Serial
					if err := tx.PutCertificate(o); err != nil {
						return err
					}
				}
			}
			d.Previous, d.Current = serial, rec.Serial
			d.Renewals++
			return nil
		})
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if err != nil {
			return nil, s.internal("renew: commit", err)
		}
		s.log.LogAttrs(ctx, slog.LevelInfo, "renewed", slog.String("device", dev.ID), slog.String("cert", rec.Serial),
			slog.String("from", serial), slog.String("transport", req.Transport))
		return &Result{Certificate: cert, Chain: s.ca.ChainOf(cert), DeviceID: committed.ID, State: committed.State, Zone: committed.Zone}, nil
	}
	return nil, &Error{Reason: ReasonOverloaded, Msg: "concurrent requests for this device; retry", RetryAfter: s.retryAfter}
}

// commitIssued commits an issued certificate in one transaction: the
// compare-and-swap on the device read before issuing, the changes of the
// operation (mutate), the new certificate, the decision's state and zone,
// pruning and the audit entry.
func (s *Service) commitIssued(ctx context.Context, dev device.Device, rec device.Certificate, dec Decision, now time.Time,
	op, auditDetail string, rep device.Reported, req Request, mutate func(tx store.Tx, d *device.Device) error) (device.Device, error) {
	var committed device.Device
	err := s.store.Update(ctx, func(tx store.Tx) error {
		d, err := tx.Device(dev.ID)
		if err != nil {
			return err
		}
		if d.Revision != dev.Revision {
			return store.ErrConflict
		}
		if err := mutate(tx, &d); err != nil {
			return err
		}
		if err := tx.PutCertificate(rec); err != nil {
			return err
		}
		if err := s.moveTo(&d, dec, now, op); err != nil {
			return err
		}
		if !rep.Empty() {
			d.Reported.FirmwareVersion, d.Reported.FirmwareSHA256, d.Reported.DigestAsRecorded = rep.FirmwareVersion, rep.FirmwareSHA256, false
			if rep.FirmwareSHA256 != "" && rep.FirmwareSHA256 == d.Provenance.FirmwareSHA256 {
				d.Reported.FirmwareSHA256, d.Reported.DigestAsRecorded = "", true
			}
		}
		// The report's time is the record's UpdatedAt: not stored twice.
		d.Reported.At, d.Reported.Remote = time.Time{}, req.Remote
		if err := prune(tx, d, now); err != nil {
			return err
		}
		if _, err := tx.AppendAudit(audit.Entry{Time: now, Actor: "device", Action: op, DeviceID: d.ID,
			Outcome: "ok", Cert: rec.Serial, Policy: dec.PolicyVersion + "/" + dec.Rule, Detail: auditDetail}); err != nil {
			return err
		}
		if err := tx.PutDevice(&d); err != nil {
			return err
		}
		committed = d
		return nil
	})
	return committed, err
}

// checkOwner refuses, and audits, a device sold to another owner.
func (s *Service) checkOwner(ctx context.Context, d device.Device, req Request, now time.Time) error {
	p := d.Provenance
	if s.owner == nil || s.owner.Owns(p.Owner, p.OwnerKey) {
		return nil
	}
	who := p.Owner
	if p.OwnerKey != "" {
		who += " (key " + p.OwnerKey[:16] + "..)"
	}
	err := s.store.Update(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Entry{Time: now, Actor: "device", Action: "enroll", DeviceID: d.ID,
			Outcome: string(ReasonWrongOwner), Detail: "owned by " + who + ", from " + req.Remote})
		return err
	})
	if err != nil {
		return s.internal("enroll: audit refusal", err)
	}
	return refuse(ReasonWrongOwner, "device belongs to owner %s, not to this operator", who)
}

// stateAllows refuses devices whose state forbids any credential.
func (s *Service) stateAllows(d device.Device) error {
	switch d.State {
	case device.Transferred:
		return refuse(ReasonWrongOwner, "device was transferred to another owner: %s", d.Reason)
	case device.Denied:
		return refuse(ReasonDenied, "device is denied: %s", d.Reason)
	case device.Revoked, device.Decommissioned:
		return refuse(ReasonRevoked, "device is %s: %s", d.State, d.Reason)
	case device.Held:
		return &Error{Reason: ReasonHeld, Msg: "device is held for an operator: " + d.Reason, RetryAfter: s.holdRetry}
	}
	return nil
}

func (s *Service) decide(ctx context.Context, in Input) (Decision, error) {
	dec, err := s.decider.Decide(ctx, in)
	if err != nil {
		return Decision{}, s.internal("policy", err)
	}
	if dec.Action == Allow || dec.Action == Quarantine {
		if dec.Lifetime <= 0 {
			return Decision{}, s.internal("policy", fmt.Errorf("rule %q allows without a certificate lifetime", dec.Rule))
		}
	}
	return dec, nil
}

// applyRefusal records a hold or deny decision. done reports whether the
// decision ended the request.
func (s *Service) applyRefusal(ctx context.Context, dev device.Device, dec Decision, op string, now time.Time, req Request) (*Result, error, bool) {
	switch dec.Action {
	case Allow, Quarantine:
		return nil, nil, false
	case Hold:
		if err := s.park(ctx, dev, device.EvHold, op, now, dec.Reason, dec.PolicyVersion+"/"+dec.Rule, req); err != nil {
			return nil, err, true
		}
		return nil, &Error{Reason: ReasonHeld, Msg: "held for an operator's approval: " + dec.Reason, RetryAfter: s.holdRetry}, true
	case Deny:
		if err := s.park(ctx, dev, device.EvDeny, op, now, dec.Reason, dec.PolicyVersion+"/"+dec.Rule, req); err != nil {
			return nil, err, true
		}
		return nil, refuse(ReasonDenied, "%s (rule %s)", dec.Reason, dec.Rule), true
	}
	return nil, s.internal("policy", fmt.Errorf("unknown action %q", dec.Action)), true
}

// park moves a device to held or denied, with an audit entry.
func (s *Service) park(ctx context.Context, dev device.Device, ev device.Event, op string, now time.Time, reason, policy string, req Request) error {
	return s.store.Update(ctx, func(tx store.Tx) error {
		d, err := tx.Device(dev.ID)
		if err != nil {
			return err
		}
		if d.Revision != dev.Revision {
			return store.ErrConflict
		}
		next, err := device.Next(d.State, ev)
		if err != nil {
			return err
		}
		d.State, d.Reason, d.Cause, d.UpdatedAt = next, reason, op, now
		if op == "reonboard" {
			d.Flags.Reonboard = reason
		}
		if _, err := tx.AppendAudit(audit.Entry{Time: now, Actor: "device", Action: op, DeviceID: d.ID,
			Outcome: string(next), Detail: reason, Policy: policy}); err != nil {
			return err
		}
		return tx.PutDevice(&d)
	})
}

// refuseUnknown answers an IDevID whose key no manifest lists: a clone or
// counterfeit when its serial is known under another key, else an unknown
// device. Both are audited; an unknown device is not created.
func (s *Service) refuseUnknown(ctx context.Context, mfr string, leaf *x509.Certificate, key string, req Request, now time.Time) error {
	serial := leaf.Subject.SerialNumber
	if serial == "" {
		serial = leaf.Subject.CommonName
	}
	id := device.ID(mfr, serial)
	var clone bool
	err := s.store.Update(ctx, func(tx store.Tx) error {
		clone = false
		d, err := tx.Device(id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err == nil {
			clone = true
			msg := fmt.Sprintf("clone suspected: IDevID key %s.. from %s differs from the manifest", key[:16], req.Remote)
			return holdAsClone(tx, d, msg, now)
		}
		_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: "device", Action: "enroll", Outcome: string(ReasonUnknownDevice),
			Detail: fmt.Sprintf("IDevID %q of %s key %s from %s in no manifest", serial, mfr, key, req.Remote)})
		return err
	})
	if err != nil {
		return s.internal("enroll: audit refusal", err)
	}
	if clone {
		s.log.LogAttrs(ctx, slog.LevelWarn, "clone suspected", slog.String("device", id), slog.String("remote", req.Remote))
		return refuse(ReasonCloneSuspected, "serial %s is registered with another IDevID key; device held for an operator", serial)
	}
	return refuse(ReasonUnknownDevice, "no manifest lists this IDevID key (serial %s)", serial)
}

// suspectClone flags a device as a suspected clone and holds it.
func (s *Service) suspectClone(ctx context.Context, id, msg string, now time.Time) error {
	err := s.store.Update(ctx, func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		return holdAsClone(tx, d, msg, now)
	})
	if err != nil {
		return s.internal("clone: hold", err)
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "clone suspected", slog.String("device", id), slog.String("why", msg))
	return nil
}

// holdAsClone records a clone suspicion on d: flag, hold, audit.
func holdAsClone(tx store.Tx, d device.Device, msg string, now time.Time) error {
	d.Flags.Clone = msg
	if next, err := device.Next(d.State, device.EvHold); err == nil {
		d.State, d.Reason = next, msg
	}
	d.Cause, d.UpdatedAt = "clone-detection", now
	if err := tx.PutDevice(&d); err != nil {
		return err
	}
	_, err := tx.AppendAudit(audit.Entry{Time: now, Actor: "device", Action: "clone-suspected", DeviceID: d.ID,
		Outcome: string(ReasonCloneSuspected), Detail: msg})
	return err
}

// host returns the host part of a "host:port" endpoint.
func host(endpoint string) string {
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		return h
	}
	return endpoint
}

// moveTo applies an allow or quarantine decision to d.
func (s *Service) moveTo(d *device.Device, dec Decision, now time.Time, cause string) error {
	ev := device.EvEnroll
	if dec.Action == Quarantine {
		ev = device.EvQuarantine
	}
	next, err := device.Next(d.State, ev)
	if err != nil {
		return err
	}
	d.State, d.Zone, d.Reason, d.Cause, d.UpdatedAt = next, dec.Zone, dec.Reason, cause, now
	d.Profile = device.Profile{SecurityLevel: dec.SecurityLevel, Segment: dec.Segment, Topics: dec.Topics,
		Rule: dec.Rule, Policy: dec.PolicyVersion, RenewGrace: dec.RenewGrace}
	return nil
}

func (s *Service) result(d device.Device, c *device.Certificate, replayed bool) (*Result, error) {
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return nil, s.internal("stored certificate", err)
	}
	return &Result{Certificate: cert, Chain: s.ca.ChainOf(cert), DeviceID: d.ID, State: d.State, Zone: d.Zone, Replayed: replayed}, nil
}

func (s *Service) internal(op string, err error) *Error {
	s.log.Error("internal error", slog.String("op", op), slog.Any("err", err))
	return &Error{Reason: ReasonInternal, Msg: op + " failed", Err: err}
}

// prune drops certificates the registry no longer needs: superseded or
// revoked ones past their expiry (the audit log keeps their history).
func prune(tx store.Tx, d device.Device, now time.Time) error {
	all, err := tx.CertificatesOf(d.ID)
	if err != nil {
		return err
	}
	for _, c := range all {
		if c.Serial == d.Current || c.Serial == d.Previous || c.Status.Usable() {
			continue
		}
		if now.After(c.NotAfter) {
			if err := tx.DeleteCertificate(c.Serial); err != nil {
				return err
			}
		}
	}
	return nil
}

func certRecord(c *x509.Certificate, id string, kind device.CertKind, pred, key string) device.Certificate {
	return device.Certificate{Serial: serialHex(c), DeviceID: id, DER: c.Raw, KeySHA256: key, Kind: kind,
		Status: device.CertIssued, NotBefore: c.NotBefore, NotAfter: c.NotAfter, Predecessor: pred}
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// SerialHex is how the registry names a certificate: its serial number in lower-case hex.
func SerialHex(c *x509.Certificate) string { return serialHex(c) }

// inUse returns a certificate of the device that is usable and was seen in use.
func inUse(certs []device.Certificate) *device.Certificate {
	for i := range certs {
		if certs[i].Status == device.CertInUse {
			return &certs[i]
		}
	}
	return nil
}

func find(certs []device.Certificate, serial string) *device.Certificate {
	if serial == "" {
		return nil
	}
	for i := range certs {
		if certs[i].Serial == serial {
			return &certs[i]
		}
	}
	return nil
}

// detail is the audit detail of a decision: the transport, the facts it
// rested on, and the versions of the data they came from.
func detail(req Request, vr idevid.Result, mismatch string, facts provenance.View) string {
	d := fmt.Sprintf("%s data m%d v%d", req.Transport, facts.DataVersions.ManifestRevision, facts.DataVersions.VulnData)
	if vr.Expired {
		d += " idevid-expired"
	}
	if mismatch != "" {
		d += " firmware-mismatch: " + mismatch
	}
	return d
}

func chainError(err error) error {
	switch {
	case errors.Is(err, idevid.ErrNoCertificate):
		return refuseErr(ReasonUnauthenticated, err, "enrollment requires the device's IDevID as client certificate")
	case errors.Is(err, idevid.ErrExpired):
		return refuseErr(ReasonExpiredChain, err, "%v", err)
	case errors.Is(err, idevid.ErrNotYetValid):
		return refuseErr(ReasonNotYetValid, err, "%v", err)
	}
	return refuseErr(ReasonUntrustedChain, err, "%v", err)
}
