package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ServerCertificate returns Embark's own TLS/DTLS server certificate for the
// given names: a fresh ECDSA P-256 key certified by the active intermediate
// with the serverAuth extended key usage. The result's Certificate is [leaf,
// intermediate], followed by the intermediate's bridge certificate after a
// root rollover, and its Leaf is set.
//
// A CA loaded from a directory keeps the certificate in server.crt and
// server.key and returns the stored one instead while it has the same names,
// chains to the active intermediate, ends no later than now+lifetime and has
// more than a third of its life left. A stored one that cannot be used is
// replaced: after a rollover, the next call issues a new certificate under
// the new intermediate.
func (ca *CA) ServerCertificate(dnsNames []string, ips []net.IP, lifetime time.Duration) (tls.Certificate, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return tls.Certificate{}, fmt.Errorf("pki: server certificate: %w", ErrNoSANs)
	}
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	return ca.ownCertificate(ownSpec{
		what: "server certificate", certFile: ServerCertFile, keyFile: ServerKeyFile,
		cn: cn, dns: dnsNames, ips: ips, eku: x509.ExtKeyUsageServerAuth,
	}, lifetime)
}

// ResponderCertificate returns the certificate Embark signs its MQTT
// responses and commands with: a fresh ECDSA P-256 key certified by the
// intermediate, whose only name is the URI SAN uri. Devices accept signed
// messages only from a certificate carrying that URI. Like the server
// certificate, it is kept in responder.crt and responder.key and reused
// while it fits.
func (ca *CA) ResponderCertificate(uri *url.URL, lifetime time.Duration) (tls.Certificate, error) {
	if uri == nil || uri.String() == "" {
		return tls.Certificate{}, fmt.Errorf("pki: responder certificate: %w", ErrNoSANs)
	}
	return ca.ownCertificate(ownSpec{
		what: "responder certificate", certFile: ResponderCertFile, keyFile: ResponderKeyFile,
		cn: "Embark responder", uris: []*url.URL{uri},
	}, lifetime)
}

// ownSpec describes one of Embark's own certificates.
type ownSpec struct {
	what              string
	certFile, keyFile string
	cn                string
	dns               []string
	ips               []net.IP
	uris              []*url.URL
	eku               x509.ExtKeyUsage // 0: none
}

func (ca *CA) ownCertificate(spec ownSpec, lifetime time.Duration) (tls.Certificate, error) {
	ca.serverMu.Lock()
	defer ca.serverMu.Unlock()

	g := ca.state().active
	now := ca.clock()
	if ca.dir != "" {
		if c, ok := ca.storedOwnCertificate(g, spec, lifetime, now); ok {
			return c, nil
		}
	}
	fail := func(err error) (tls.Certificate, error) {
		return tls.Certificate{}, fmt.Errorf("pki: %s: %w", spec.what, err)
	}
	notBefore, notAfter, err := ca.validity(g, lifetime)
	if err != nil {
		return fail(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fail(err)
	}
	serial, err := newSerial()
	if err != nil {
		return fail(err)
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return fail(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: spec.cn},
		DNSNames:              slices.Clone(spec.dns),
		IPAddresses:           slices.Clone(spec.ips),
		URIs:                  slices.Clone(spec.uris),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		SubjectKeyId:          skid,
		PublicKey:             &key.PublicKey,
		PublicKeyAlgorithm:    x509.ECDSA,
	}
	if spec.eku != 0 {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{spec.eku}
	}
	leaf, err := ca.create(g, tmpl, lifetime)
	if err != nil {
		return fail(err)
	}

	if ca.dir != "" {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return fail(err)
		}
		keyPath, certPath := filepath.Join(ca.dir, spec.keyFile), filepath.Join(ca.dir, spec.certFile)
		// Key first: a crash in between leaves a mismatch, which the next
		// start detects and repairs by issuing again.
		if err := replaceFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), keyPerm); err != nil {
			return fail(err)
		}
		if err := replaceFile(certPath, pemCert(append([]*x509.Certificate{leaf}, g.presented()...)...), certPerm); err != nil {
			return fail(err)
		}
		if err := syncDir(ca.dir); err != nil {
			return fail(err)
		}
	}
	ca.logger.Info(spec.what+" issued", "serial", fmt.Sprintf("%x", leaf.SerialNumber),
		"dns", spec.dns, "ips", spec.ips, "uris", spec.uris, "not_after", leaf.NotAfter)
	return tls.Certificate{
		Certificate: g.tlsChain(leaf),
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// presented returns the CA certificates that go with a certificate g
// issued: the intermediate, and its bridge if it has one.
func (g *generation) presented() []*x509.Certificate {
	if g.bridge != nil {
		return []*x509.Certificate{g.inter, g.bridge}
	}
	return []*x509.Certificate{g.inter}
}

// tlsChain returns the DER chain a TLS peer presents with leaf.
func (g *generation) tlsChain(leaf *x509.Certificate) [][]byte {
	out := [][]byte{leaf.Raw}
	for _, c := range g.presented() {
		out = append(out, c.Raw)
	}
	return out
}

// storedOwnCertificate returns the stored certificate of spec if it may be
// used again; see ServerCertificate.
func (ca *CA) storedOwnCertificate(g *generation, spec ownSpec, lifetime time.Duration, now time.Time) (tls.Certificate, bool) {
	certPath, keyPath := filepath.Join(ca.dir, spec.certFile), filepath.Join(ca.dir, spec.keyFile)
	reissue := func(why string, args ...any) (tls.Certificate, bool) {
		ca.logger.Info("issuing a new "+spec.what, append([]any{"reason", why}, args...)...)
		return tls.Certificate{}, false
	}
	leaf, err := readCertificate(certPath)
	if errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, false
	}
	if err != nil {
		return reissue("unreadable certificate", "err", err)
	}
	if !g.issues(leaf) {
		return reissue("not issued by the active intermediate", "issuer", leaf.Issuer.String())
	}
	if err := leaf.CheckSignatureFrom(g.inter); err != nil {
		return reissue("not issued by the active intermediate", "err", err)
	}
	key, err := readKey(keyPath, leaf)
	if err != nil {
		// Includes a key others could read: it is replaced, never used.
		return reissue("unusable key", "err", err)
	}
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	switch {
	case now.Before(leaf.NotBefore) || !now.Before(leaf.NotAfter):
		return reissue("outside its validity", "not_before", leaf.NotBefore, "not_after", leaf.NotAfter)
	case leaf.NotAfter.Sub(now) <= life/3:
		return reissue("less than a third of its life left", "not_after", leaf.NotAfter)
	case leaf.NotAfter.After(now.Add(lifetime)):
		return reissue("longer than the lifetime now asked for", "not_after", leaf.NotAfter, "lifetime", lifetime)
	case !sameDNSNames(leaf.DNSNames, spec.dns) || !sameIPs(leaf.IPAddresses, spec.ips) || !sameURIs(leaf.URIs, spec.uris):
		return reissue("names changed", "had_dns", leaf.DNSNames, "had_ips", leaf.IPAddresses, "had_uris", leaf.URIs)
	}
	return tls.Certificate{
		Certificate: g.tlsChain(leaf),
		PrivateKey:  key,
		Leaf:        leaf,
	}, true
}

func sameURIs(a, b []*url.URL) bool {
	return slices.EqualFunc(a, b, func(x, y *url.URL) bool { return x.String() == y.String() })
}

func sameDNSNames(a, b []string) bool {
	norm := func(s []string) []string {
		out := make([]string, len(s))
		for i, n := range s {
			out[i] = strings.ToLower(strings.TrimSuffix(n, "."))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}

func sameIPs(a, b []net.IP) bool {
	norm := func(s []net.IP) []string {
		out := make([]string, len(s))
		for i, ip := range s {
			out[i] = ip.String()
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(norm(a), norm(b))
}
