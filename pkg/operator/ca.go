package operator

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// Files of an operator CA directory.
const (
	CACertFile = "ca.crt"
	CAKeyFile  = "ca.key"
)

// Lifetimes.
const (
	// CALifetime is the validity of a new operator CA.
	CALifetime = 10 * 365 * 24 * time.Hour
	// DefaultLifetime is the default validity of an operator certificate.
	DefaultLifetime = 365 * 24 * time.Hour
	// MinLifetime and MaxLifetime bound an operator certificate's validity.
	MinLifetime = time.Hour
	MaxLifetime = 5 * 365 * 24 * time.Hour
)

// backdate absorbs small clock differences between hosts.
const backdate = time.Minute

// CA is the operator CA: it issues operator certificates and verifies them.
type CA struct {
	cert  *x509.Certificate
	key   crypto.Signer
	pool  *x509.CertPool
	clock func() time.Time
	log   *slog.Logger
}

// Option configures a CA.
type Option func(*CA) error

// WithClock sets the clock used for validity periods and checks.
func WithClock(now func() time.Time) Option {
	return func(ca *CA) error {
		if now == nil {
			return errors.New("operator: WithClock(nil)")
		}
		ca.clock = now
		return nil
	}
}

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(ca *CA) error {
		if l == nil {
			return errors.New("operator: WithLogger(nil)")
		}
		ca.log = l
		return nil
	}
}

func newCA(opts []Option) (*CA, error) {
	ca := &CA{clock: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if err := o(ca); err != nil {
			return nil, err
		}
	}
	return ca, nil
}

// Init loads the operator CA in dir, creating it first (directory 0700, key
// 0600) if dir holds none of its files. It never overwrites a file: a
// directory with only one of the two files fails with ErrIncompleteCA.
func Init(dir string, opts ...Option) (*CA, error) {
	ca, err := newCA(opts)
	if err != nil {
		return nil, err
	}
	err = ca.load(dir)
	if !errors.Is(err, ErrNoCA) {
		return ca, err
	}
	if err := ca.create(dir); err != nil {
		return nil, err
	}
	return ca, ca.load(dir)
}

// Load loads the operator CA in dir. It fails with ErrNoCA if there is
// none, ErrIncompleteCA if a file is missing, ErrKey if the key file is
// readable by group or others and ErrBadCA if the files do not match.
func Load(dir string, opts ...Option) (*CA, error) {
	ca, err := newCA(opts)
	if err != nil {
		return nil, err
	}
	if err := ca.load(dir); err != nil {
		return nil, err
	}
	return ca, nil
}

func (ca *CA) load(dir string) error {
	certPath, keyPath := filepath.Join(dir, CACertFile), filepath.Join(dir, CAKeyFile)
	_, certErr := os.Stat(certPath)
	_, keyErr := os.Stat(keyPath)
	switch {
	case errors.Is(certErr, fs.ErrNotExist) && errors.Is(keyErr, fs.ErrNotExist):
		return fmt.Errorf("%w in %s", ErrNoCA, dir)
	case errors.Is(certErr, fs.ErrNotExist) || errors.Is(keyErr, fs.ErrNotExist):
		return fmt.Errorf("%w in %s: %s and %s must both exist (restore the missing one, or remove both to create a new operator CA, which invalidates every operator certificate)",
			ErrIncompleteCA, dir, CACertFile, CAKeyFile)
	case certErr != nil:
		return fmt.Errorf("operator: load: %w", certErr)
	case keyErr != nil:
		return fmt.Errorf("operator: load: %w", keyErr)
	}
	if err := checkKeyPerm(keyPath); err != nil {
		return err
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return fmt.Errorf("operator: load: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("%w: %s: no PEM certificate", ErrBadCA, certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadCA, certPath, err)
	}
	if !cert.IsCA || cert.CheckSignatureFrom(cert) != nil {
		return fmt.Errorf("%w: %s is not a self-signed CA certificate", ErrBadCA, certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return fmt.Errorf("operator: load: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return fmt.Errorf("%w: %s: no PEM key", ErrBadCA, keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrBadCA, keyPath, err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return fmt.Errorf("%w: %s: not a signing key", ErrBadCA, keyPath)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil || !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		return fmt.Errorf("%w: %s does not match %s", ErrBadCA, keyPath, certPath)
	}
	ca.cert, ca.key = cert, signer
	ca.pool = x509.NewCertPool()
	ca.pool.AddCert(cert)
	ca.log.Info("operator CA loaded", slog.String("dir", dir), slog.String("sha256", Fingerprint(cert)))
	return nil
}

func (ca *CA) create(dir string) error {
	fail := func(err error) error { return fmt.Errorf("operator: create CA: %w", err) }
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fail(err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	serial, err := newSerial()
	if err != nil {
		return fail(err)
	}
	now := ca.clock()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "Embark Operator CA", Organization: []string{"Embark"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fail(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fail(err)
	}
	// Key first: a crash in between leaves an incomplete CA, which the next
	// start reports instead of silently replacing.
	if err := writeNew(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fail(err)
	}
	if err := writeNew(filepath.Join(dir, CACertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fail(err)
	}
	ca.log.Info("operator CA created", slog.String("dir", dir))
	return nil
}

// Root returns the operator CA certificate.
func (ca *CA) Root() *x509.Certificate { return ca.cert }

// Pool returns a pool holding only the operator CA, for
// tls.Config.ClientCAs.
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// Issue certifies pub (ECDSA P-256 or P-384, or Ed25519) as the operator
// name with role for lifetime (at most until the CA expires). The
// certificate has the identity's URI SAN and only the clientAuth extended
// key usage. Issue does not record it: see [Add].
func (ca *CA) Issue(name string, role Role, pub crypto.PublicKey, lifetime time.Duration) (*x509.Certificate, error) {
	id := Identity{Name: name, Role: role}
	if err := CheckName(name); err != nil {
		return nil, err
	}
	if !role.valid() {
		return nil, fmt.Errorf("%w: %d", ErrRole, int(role))
	}
	if lifetime < MinLifetime || lifetime > MaxLifetime {
		return nil, fmt.Errorf("%w: %s not in [%s, %s]", ErrLifetime, lifetime, MinLifetime, MaxLifetime)
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, fmt.Errorf("%w: ECDSA curve %s (want P-256 or P-384)", ErrKey, k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("%w: %T (want ECDSA P-256/P-384 or Ed25519)", ErrKey, pub)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, fmt.Errorf("operator: issue: %w", err)
	}
	now := ca.clock()
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, OrganizationalUnit: []string{role.String()}, Organization: []string{"Embark operators"}},
		URIs:                  []*url.URL{id.URI()},
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("operator: issue: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("operator: issue: %w", err)
	}
	ca.log.Info("operator certificate issued", slog.String("name", name), slog.String("role", role.String()),
		slog.String("serial", SerialOf(cert)), slog.Time("not_after", cert.NotAfter))
	return cert, nil
}

// Verify checks that cert was issued by this CA for client authentication
// and is valid now, and returns the identity it names.
func (ca *CA) Verify(cert *x509.Certificate) (Identity, error) {
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       ca.pool,
		CurrentTime: ca.clock(),
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrNotOperator, err)
	}
	return IdentityOf(cert)
}

// IdentityOf reads the identity an operator certificate names: its single
// operator URI SAN, and its serial. It does not verify the certificate
// (the TLS handshake or [CA.Verify] does).
func IdentityOf(cert *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range cert.URIs {
		if !strings.HasPrefix(u.String(), URNPrefix) {
			continue
		}
		id, err := parseURI(u)
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	if len(found) != 1 {
		return Identity{}, fmt.Errorf("%w: %d operator URIs (want exactly one %s<role>:<name>)", ErrNotOperator, len(found), URNPrefix)
	}
	id := found[0]
	id.Serial = SerialOf(cert)
	return id, nil
}

// SerialOf returns a certificate's serial as the registry writes it:
// lower-case hex.
func SerialOf(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }

// Fingerprint returns the hex SHA-256 of a certificate's DER.
func Fingerprint(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

func newSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// checkKeyPerm refuses a key file that group or others may access.
func checkKeyPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("operator: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: %s is not a regular file", ErrKey, path)
	}
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o, want 0600 or stricter (chmod 600 %s)", ErrKey, path, perm, path)
	}
	return nil
}

// writeNew writes a new file; it never replaces one.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
