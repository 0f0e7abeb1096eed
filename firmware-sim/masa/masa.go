package masa

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/voucher"
)

// Defaults of Options.
const (
	// DefaultMaxNonceless bounds the life of a nonceless voucher.
	DefaultMaxNonceless = 30 * 24 * time.Hour
	// LogFile is the default voucher log in the factory directory.
	LogFile = "masa-log.jsonl"
)

// Options configure a MASA.
type Options struct {
	// FactoryDir is the factory output directory. Required.
	FactoryDir string
	// OwnerKeys are the keys of owners whose sales records name them
	// without a key (by owner name).
	OwnerKeys map[string]*hybridsig.PublicKey
	// MaxNonceless bounds nonceless vouchers. Default DefaultMaxNonceless.
	MaxNonceless time.Duration
	// LogPath is the JSON-lines voucher log. Default FactoryDir/masa-log.jsonl.
	LogPath string
	// ServerNames are the DNS names and IP addresses of the TLS
	// certificate. Default localhost, 127.0.0.1, ::1.
	ServerNames []string
	Clock       func() time.Time
	Logger      *slog.Logger
}

// MASA is the manufacturer's voucher service. It is safe for concurrent use.
type MASA struct {
	o      Options
	mfr    *factory.Manufacturer
	signer *voucher.Signer
	cert   tls.Certificate
	log    *slog.Logger
	vlog   *voucherLog

	mu    sync.RWMutex
	sales *salesRecords
	regs  map[string]*registration // by owner KeyID
	// verified caches registrar and proximity leaves verified against a
	// registration: leaf DER → owner KeyID, valid while the leaf is.
	verified map[string]verifiedLeaf

	srvMu sync.Mutex
	srv   *http.Server
	ln    net.Listener

	issued, refused atomic.Uint64
}

type verifiedLeaf struct {
	ownerKey string
	notAfter time.Time
}

// New loads the factory's manufacturer and sales records.
func New(o Options) (*MASA, error) {
	if o.FactoryDir == "" {
		return nil, fmt.Errorf("%w: no factory directory", ErrOptions)
	}
	if o.MaxNonceless == 0 {
		o.MaxNonceless = DefaultMaxNonceless
	}
	if o.MaxNonceless < time.Minute {
		return nil, fmt.Errorf("%w: max nonceless lifetime %s is below a minute", ErrOptions, o.MaxNonceless)
	}
	if o.LogPath == "" {
		o.LogPath = filepath.Join(o.FactoryDir, LogFile)
	}
	if len(o.ServerNames) == 0 {
		o.ServerNames = []string{"localhost", "127.0.0.1", "::1"}
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	mfr, err := factory.LoadManufacturer(o.FactoryDir)
	if err != nil {
		return nil, fmt.Errorf("masa: %w", err)
	}
	signer, err := voucher.NewSigner(mfr.VoucherKey, mfr.VoucherCert)
	if err != nil {
		return nil, fmt.Errorf("masa: %w", err)
	}
	sales, err := loadSales(o.FactoryDir, mfr.ManifestSigner.Public())
	if err != nil {
		return nil, err
	}
	regs, err := loadRegistrations(filepath.Join(o.FactoryDir, RegistrationsFile))
	if err != nil {
		return nil, err
	}
	m := &MASA{o: o, mfr: mfr, signer: signer, log: o.Logger, sales: sales, regs: regs, verified: map[string]verifiedLeaf{}}
	if m.cert, err = m.issueTLSCert(); err != nil {
		return nil, err
	}
	if m.vlog, err = openLog(o.LogPath); err != nil {
		return nil, err
	}
	return m, nil
}

// Manufacturer names the manufacturer.
func (m *MASA) Manufacturer() string { return m.mfr.Name }

// Root is the manufacturer's root, which authenticates the MASA's TLS
// certificate.
func (m *MASA) Root() *x509.Certificate { return m.mfr.Root }

// issueTLSCert makes the MASA's TLS server certificate, issued by the
// manufacturer's root for the configured names, valid 30 days.
func (m *MASA) issueTLSCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("masa: tls key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("masa: tls serial: %w", err)
	}
	now := m.o.Clock()
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: m.mfr.Name + " MASA", Organization: []string{m.mfr.Name}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(30 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range m.o.ServerNames {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.mfr.Root, &key.PublicKey, m.mfr.RootKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("masa: tls certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("masa: tls certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// Reload reads the sales records again (after a new factory run).
func (m *MASA) Reload() error {
	s, err := loadSales(m.o.FactoryDir, m.mfr.ManifestSigner.Public())
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.sales = s
	m.mu.Unlock()
	m.log.Info("masa: sales records reloaded", "revision", s.revision, "devices", len(s.bySerial))
	return nil
}

// saleOf returns the sales record of a serial, reading the manifest again
// once if it changed since it was loaded.
func (m *MASA) saleOf(serial string) (sale, bool) {
	m.mu.RLock()
	s, ok := m.sales.bySerial[serial]
	mod := m.sales.modTime
	m.mu.RUnlock()
	if ok {
		return s, true
	}
	if st, err := os.Stat(filepath.Join(m.o.FactoryDir, factory.ManifestFile)); err == nil && st.ModTime().After(mod) {
		if err := m.Reload(); err != nil {
			m.log.Warn("masa: reload sales records", "err", err)
			return sale{}, false
		}
		m.mu.RLock()
		s, ok = m.sales.bySerial[serial]
		m.mu.RUnlock()
	}
	return s, ok
}

func refusal(status int, r Reason, format string, args ...any) *Refusal {
	return &Refusal{Status: status, Reason: r, Msg: fmt.Sprintf(format, args...)}
}

// Register records an owner's domain registration. The registration must
// be signed by the owner key it names, and the connection must be
// authenticated by a registrar certificate (id-kp-cmcRA) that chains to
// the domain CA registered: the owner proves it holds its key, and that it
// controls the CA, so that nobody registers another's CA as its own. A
// domain CA is registered by one owner key only.
func (m *MASA) Register(b []byte, tlsChain []*x509.Certificate, tlsState string) (*RegistrationResult, error) {
	r, err := voucher.OpenRegistration(b)
	if err != nil {
		reason := ReasonBadRequest
		if isSignature(err) {
			reason = ReasonBadSignature
		}
		ref := refusal(http.StatusBadRequest, reason, "registration: %v", err)
		m.vlog.write(logRecord{Time: m.o.Clock().UTC(), Event: "registration_refused", Reason: string(ref.Reason), Message: ref.Msg, TLS: tlsState})
		return nil, ref
	}
	now := m.o.Clock()
	if now.After(r.DomainCA.NotAfter) || now.Before(r.DomainCA.NotBefore) {
		return nil, refusal(http.StatusBadRequest, ReasonBadRequest, "the domain CA %s is outside its validity", r.DomainCA.Subject)
	}
	if err := controls(tlsChain, r.DomainCA, now); err != nil {
		ref := refusal(http.StatusForbidden, ReasonUnauthenticatedRegistrar, "%v", err)
		m.vlog.write(logRecord{Time: now, Event: "registration_refused", Owner: r.Owner, OwnerKey: r.OwnerKey.KeyID(),
			Reason: string(ref.Reason), Message: ref.Msg, TLS: tlsState})
		return nil, ref
	}
	id := r.OwnerKey.KeyID()
	m.mu.Lock()
	for kid, other := range m.regs {
		if kid != id && other.domainCA.Equal(r.DomainCA) {
			m.mu.Unlock()
			return nil, refusal(http.StatusConflict, ReasonDomainTaken, "the domain CA %s is registered by another owner key", r.DomainCA.Subject)
		}
	}
	old := m.regs[id]
	switch {
	case old != nil && r.CreatedOn.Before(old.createdOn):
		m.mu.Unlock()
		return nil, refusal(http.StatusConflict, ReasonStaleRegistration, "a registration of %s made %s is kept; this one was made %s",
			id, old.createdOn.Format(time.RFC3339), r.CreatedOn.Format(time.RFC3339))
	case old != nil && old.domainCA.Equal(r.DomainCA):
		old.createdOn = r.CreatedOn
	default:
		m.regs[id] = newRegistration(r.Owner, r.OwnerKey, r.DomainCA, r.CreatedOn, now)
		clear(m.verified)
	}
	reg := m.regs[id]
	err = saveRegistrations(filepath.Join(m.o.FactoryDir, RegistrationsFile), m.regs)
	devices := 0
	for _, s := range m.sales.bySerial {
		if m.ownerKeyOf(s) == id {
			devices++
		}
	}
	m.mu.Unlock()
	if err != nil {
		return nil, refusal(http.StatusInternalServerError, ReasonInternal, "%v", err)
	}
	res := &RegistrationResult{Owner: reg.owner, OwnerKey: id, DomainCASHA256: reg.domainSHA256(), RegisteredAt: reg.at, Devices: devices}
	m.vlog.write(logRecord{Time: now.UTC(), Event: "registration", Owner: reg.owner, OwnerKey: id, Domain: res.DomainCASHA256, TLS: tlsState})
	m.log.Info("masa: domain registered", "owner", reg.owner, "owner_key", id, "domain_ca", reg.domainCA.Subject.String(), "devices", devices)
	return res, nil
}

// RegistrationResult answers a registration.
type RegistrationResult struct {
	Owner          string    `json:"owner"`
	OwnerKey       string    `json:"owner_key"`
	DomainCASHA256 string    `json:"domain_ca_sha256"`
	RegisteredAt   time.Time `json:"registered_at"`
	// Devices is how many devices of the sales records this key owns.
	Devices int `json:"devices"`
}

// controls checks that a connection's client chain is a registrar
// certificate of the domain CA ca.
func controls(chain []*x509.Certificate, ca *x509.Certificate, now time.Time) error {
	if len(chain) == 0 {
		return fmt.Errorf("no client certificate: register over a connection authenticated by a registrar certificate of the domain CA")
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return fmt.Errorf("the client certificate %s does not chain to the domain CA %s: %v", chain[0].Subject, ca.Subject, err)
	}
	if !voucher.IsRegistrar(chain[0]) {
		return fmt.Errorf("the client certificate %s is not a registrar certificate (id-kp-cmcRA)", chain[0].Subject)
	}
	return nil
}

// ownerKeyOf returns the KeyID of the key that owns a sale, or "". The
// caller holds m.mu.
func (m *MASA) ownerKeyOf(s sale) string {
	if s.ownerKey != "" {
		return s.ownerKey
	}
	if k, ok := m.o.OwnerKeys[s.owner]; ok && s.owner != "" {
		return k.KeyID()
	}
	return ""
}

// registrationFor finds the registration whose domain CA a chain verifies
// to, for the given key usage (client auth for registrars, server auth for
// proximity chains).
func (m *MASA) registrationFor(chain []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) (*registration, bool) {
	leaf := chain[0]
	key := string(leaf.Raw) + "\x00" + fmt.Sprint(usage)
	m.mu.RLock()
	v, ok := m.verified[key]
	var reg *registration
	if ok && now.Before(v.notAfter) {
		reg = m.regs[v.ownerKey]
	}
	regs := make([]*registration, 0, len(m.regs))
	if reg == nil {
		for _, r := range m.regs {
			regs = append(regs, r)
		}
	}
	m.mu.RUnlock()
	if reg != nil {
		return reg, true
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, r := range regs {
		chains, err := leaf.Verify(x509.VerifyOptions{Roots: r.pool, Intermediates: inter, CurrentTime: now,
			KeyUsages: []x509.ExtKeyUsage{usage}})
		if err != nil {
			continue
		}
		until := leaf.NotAfter
		for _, c := range chains[0] {
			if c.NotAfter.Before(until) {
				until = c.NotAfter
			}
		}
		m.mu.Lock()
		if len(m.verified) > 1024 {
			clear(m.verified)
		}
		m.verified[key] = verifiedLeaf{ownerKey: r.key.KeyID(), notAfter: until}
		m.mu.Unlock()
		return r, true
	}
	return nil, false
}

// Request is a registrar's voucher request as the transport received it.
type Request struct {
	// Body is the signed registrar request.
	Body []byte
	// TLSChain is the client certificate chain of the connection.
	TLSChain []*x509.Certificate
	// TLS describes the connection ("TLS1.3 X25519MLKEM768").
	TLS    string
	Remote string
}

// RequestVoucher decides a registrar's request and returns the
// countersigned voucher, or a *Refusal.
func (m *MASA) RequestVoucher(req Request) ([]byte, error) {
	rec := logRecord{Time: m.o.Clock().UTC(), Event: "voucher", TLS: req.TLS, Remote: req.Remote}
	out, err := m.requestVoucher(req, &rec)
	if err != nil {
		m.refused.Add(1)
		var ref *Refusal
		if !errors.As(err, &ref) {
			ref = refusal(http.StatusInternalServerError, ReasonInternal, "%v", err)
		}
		rec.Event, rec.Reason, rec.Message = "refused", string(ref.Reason), ref.Msg
		m.vlog.write(rec)
		m.log.Info("masa: voucher refused", "serial", rec.Serial, "registrar", rec.Registrar, "reason", ref.Reason, "msg", ref.Msg)
		return nil, ref
	}
	m.issued.Add(1)
	m.vlog.write(rec)
	return out, nil
}

func (m *MASA) requestVoucher(req Request, rec *logRecord) ([]byte, error) {
	now := m.o.Clock()
	if len(req.TLSChain) == 0 {
		return nil, refusal(http.StatusForbidden, ReasonUnauthenticatedRegistrar, "no client certificate: present a registrar certificate of a registered domain")
	}
	rec.Registrar = req.TLSChain[0].Subject.String()
	rec.RegistrarCert = sha256Hex(req.TLSChain[0].Raw)
	reg, ok := m.registrationFor(req.TLSChain, x509.ExtKeyUsageClientAuth, now)
	if !ok {
		return nil, refusal(http.StatusForbidden, ReasonUnauthenticatedRegistrar, "%s does not chain to a registered domain CA", req.TLSChain[0].Subject)
	}
	if !voucher.IsRegistrar(req.TLSChain[0]) {
		return nil, refusal(http.StatusForbidden, ReasonUnauthenticatedRegistrar, "%s is not a registrar certificate (id-kp-cmcRA)", req.TLSChain[0].Subject)
	}
	rec.Owner, rec.OwnerKey, rec.Domain = reg.owner, reg.key.KeyID(), reg.domainSHA256()
	sr, err := voucher.OpenRegistrarRequest(req.Body)
	if err != nil {
		switch {
		case isSignature(err):
			return nil, refusal(http.StatusBadRequest, ReasonBadSignature, "%v", err)
		case isProximity(err):
			return nil, refusal(http.StatusForbidden, ReasonProximityMismatch, "%v", err)
		}
		return nil, refusal(http.StatusBadRequest, ReasonBadRequest, "%v", err)
	}
	rec.Serial = sr.SerialNumber
	if !sr.Chain[0].Equal(req.TLSChain[0]) {
		return nil, refusal(http.StatusForbidden, ReasonRegistrarMismatch, "the request is signed by %s, the connection authenticated %s",
			sr.Chain[0].Subject, req.TLSChain[0].Subject)
	}
	s, ok := m.saleOf(sr.SerialNumber)
	if !ok {
		return nil, refusal(http.StatusNotFound, ReasonUnknownDevice, "no sales record for serial %q", sr.SerialNumber)
	}
	v := voucher.Voucher{Assertion: voucher.AssertionVerified, SerialNumber: sr.SerialNumber,
		PinnedDomainCert: reg.domainCA.Raw, CreatedOn: now.UTC().Truncate(time.Second)}
	if sr.Pledge != nil {
		leaf := sr.Pledge.Chain[0]
		if err := m.issuedHere(leaf); err != nil {
			return nil, refusal(http.StatusForbidden, ReasonUntrustedIDevID, "the pledge request is not signed by an IDevID of %s: %v", m.mfr.Name, err)
		}
		if manifest.KeyFingerprint(leaf.RawSubjectPublicKeyInfo) != s.idevid {
			return nil, refusal(http.StatusForbidden, ReasonCloneSuspected, "the IDevID of %q is not the one sold under that serial", sr.SerialNumber)
		}
		if r, ok := m.registrationFor(sr.Proximity, x509.ExtKeyUsageServerAuth, now); !ok || r != reg {
			return nil, refusal(http.StatusForbidden, ReasonProximityMismatch, "the device saw %s, which is not a server of the registrar's domain", sr.Proximity[0].Subject)
		}
		v.Nonce = sr.Nonce
		v.IDevIDIssuer = leaf.AuthorityKeyId
		rec.Nonce = hex.EncodeToString(sr.Nonce)
	} else {
		exp := sr.ExpiresOn
		if limit := now.Add(m.o.MaxNonceless); exp.After(limit) {
			exp = limit
		}
		if exp.After(reg.domainCA.NotAfter) {
			exp = reg.domainCA.NotAfter
		}
		if !exp.After(v.CreatedOn) {
			return nil, refusal(http.StatusBadRequest, ReasonBadRequest, "the requested expiry %s has passed", sr.ExpiresOn.Format(time.RFC3339))
		}
		v.ExpiresOn = exp.UTC().Truncate(time.Second)
		rec.Nonceless, rec.ExpiresOn = true, v.ExpiresOn
	}
	m.mu.RLock()
	owner := m.ownerKeyOf(s)
	m.mu.RUnlock()
	switch {
	case owner == "":
		return nil, refusal(http.StatusForbidden, ReasonNoOwnerKey, "the sales record of %q names owner %q without a key, and none is configured for it", sr.SerialNumber, s.owner)
	case owner != reg.key.KeyID():
		return nil, refusal(http.StatusForbidden, ReasonWrongOwner, "%q was not sold to the owner of key %s", sr.SerialNumber, reg.key.KeyID())
	}
	signed, err := m.signer.Sign(v)
	if err != nil {
		return nil, err
	}
	out, err := voucher.Countersign(m.mfr.ManifestSigner, signed)
	if err != nil {
		return nil, err
	}
	rec.Assertion, rec.Voucher = v.Assertion.String(), sha256Hex(signed)
	return out, nil
}

// issuedHere checks that the manufacturer's IDevID CA (or root) signed an
// IDevID for client authentication. Expiry is not the MASA's to judge: the
// owner's policy decides about expired IDevIDs.
func (m *MASA) issuedHere(leaf *x509.Certificate) error {
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || leaf.IsCA {
		return fmt.Errorf("%s is not a device certificate for client authentication", leaf.Subject)
	}
	for _, ca := range []*x509.Certificate{m.mfr.Intermediate, m.mfr.Root} {
		if bytes.Equal(leaf.RawIssuer, ca.RawSubject) && leaf.CheckSignatureFrom(ca) == nil {
			return nil
		}
	}
	return fmt.Errorf("%s is not issued by %s or %s", leaf.Subject, m.mfr.Intermediate.Subject, m.mfr.Root.Subject)
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Stats counts the vouchers issued and the requests refused.
type Stats struct {
	Manufacturer  string `json:"manufacturer"`
	Devices       int    `json:"devices"`
	Registrations int    `json:"registrations"`
	Issued        uint64 `json:"vouchers_issued"`
	Refused       uint64 `json:"refused"`
}

// Stats returns the counters.
func (m *MASA) Stats() Stats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Stats{Manufacturer: m.mfr.Name, Devices: len(m.sales.bySerial), Registrations: len(m.regs),
		Issued: m.issued.Load(), Refused: m.refused.Load()}
}
