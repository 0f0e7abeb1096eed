package estclient_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

type (
	Config      = estclient.Config
	Client      = estclient.Client
	StatusError = estclient.StatusError
	Transport   = estclient.Transport
)

const (
	DTLS           = estclient.DTLS
	TLS            = estclient.TLS
	FormatPKIXCert = estclient.FormatPKIXCert
	DefaultMaxAge  = estclient.DefaultMaxAge
)

var (
	Dial         = estclient.Dial
	ErrHandshake = estclient.ErrHandshake
	ErrConfig    = estclient.ErrConfig
	ErrTarget    = estclient.ErrTarget
	ErrResponse  = estclient.ErrResponse
)

func newPKI(t *testing.T) *esttest.PKI {
	t.Helper()
	p, err := esttest.NewPKI()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startServer(t *testing.T, p *esttest.PKI, tr Transport, cert *tls.Certificate) string {
	t.Helper()
	s, err := esttest.Start(p, esttest.Options{Transport: string(tr), Certificate: cert})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s.Target
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newCSR(t *testing.T, cn string) ([]byte, *ecdsa.PrivateKey) {
	t.Helper()
	key := newKey(t)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func dial(t *testing.T, c Config) *Client {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	cl, err := Dial(context.Background(), c)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	return cl
}

func samePublicKey(cert *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(&key.PublicKey)
}

func TestClient(t *testing.T) {
	for _, tr := range []Transport{DTLS, TLS} {
		t.Run(string(tr), func(t *testing.T) {
			p := newPKI(t)
			target := startServer(t, p, tr, nil)
			ctx := context.Background()
			idevid, err := p.IDevID("SN-0001")
			if err != nil {
				t.Fatal(err)
			}
			withIDevID := Config{Target: target, Roots: p.Roots(), Certificate: &idevid}

			t.Run("ok/crts 281 holds intermediate and root", func(t *testing.T) {
				cl := dial(t, withIDevID)
				certs, err := cl.CACerts(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(certs) != 2 || !certs[0].Equal(p.Intermediate.Cert) || !certs[1].Equal(p.Root.Cert) {
					t.Fatalf("crts = %d certificates, want [intermediate, root]", len(certs))
				}
			})
			t.Run("ok/crts 287 is the root", func(t *testing.T) {
				cl := dial(t, Config{Target: target, Roots: p.Roots()})
				root, err := cl.RootCert(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !root.Equal(p.Root.Cert) {
					t.Fatalf("root = %q, want %q", root.Subject, p.Root.Cert.Subject)
				}
			})
			t.Run("ok/peer certificates are the server's", func(t *testing.T) {
				cl := dial(t, withIDevID)
				peer := cl.PeerCertificates()
				if len(peer) == 0 || !peer[0].Equal(p.Server.Leaf) {
					t.Fatalf("peer chain does not start with the server certificate")
				}
			})
			for _, tc := range []struct {
				name   string
				format Config
				prefix string
			}{
				{name: "ok/sen 281", format: Config{}},
				{name: "ok/sen 287", format: Config{CertFormat: FormatPKIXCert}},
				{name: "ok/sen short alias", format: Config{}, prefix: "/est"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := withIDevID
					c.CertFormat = tc.format.CertFormat
					c.PathPrefix = tc.prefix
					cl := dial(t, c)
					csr, key := newCSR(t, "SN-0001")
					cert, err := cl.Enroll(ctx, csr)
					if err != nil {
						t.Fatal(err)
					}
					if !samePublicKey(cert, key) || cert.Subject.CommonName != "SN-0001" {
						t.Fatalf("issued certificate %q does not carry the CSR key", cert.Subject)
					}
				})
			}
			t.Run("ok/sren with the LDevID", func(t *testing.T) {
				cl := dial(t, withIDevID)
				csr, key := newCSR(t, "SN-0001")
				ldevid, err := cl.Enroll(ctx, csr)
				if err != nil {
					t.Fatal(err)
				}
				cert := tls.Certificate{Certificate: [][]byte{ldevid.Raw, p.Intermediate.Cert.Raw}, PrivateKey: key}
				renew := dial(t, Config{Target: target, Roots: p.Roots(), Certificate: &cert})
				csr2, key2 := newCSR(t, "SN-0001")
				next, err := renew.Reenroll(ctx, csr2)
				if err != nil {
					t.Fatal(err)
				}
				if !samePublicKey(next, key2) {
					t.Fatal("renewed certificate does not carry the new key")
				}
			})
			t.Run("ok/att", func(t *testing.T) {
				cl := dial(t, withIDevID)
				attrs, err := cl.CSRAttrs(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(attrs, []byte{0x30, 0x00}) {
					t.Fatalf("att = %x, want 3000", attrs)
				}
			})
			t.Run("ok/discover", func(t *testing.T) {
				cl := dial(t, withIDevID)
				links, err := cl.Discover(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(links, `rt="ace.est.crts"`) {
					t.Fatalf("links = %q, want ace.est.crts", links)
				}
			})

			for _, tc := range []struct {
				name    string
				cn      string
				noCert  bool
				want    StatusError
				retries bool
			}{
				{name: "fail/4.03 unknown_device", cn: esttest.CNGhost,
					want: StatusError{Code: codes.Forbidden, Reason: "unknown_device", Message: "no provenance for this IDevID"}},
				{name: "fail/5.03 held with Max-Age", cn: esttest.CNHeld, retries: true,
					want: StatusError{Code: codes.ServiceUnavailable, Reason: "held", Message: "waiting for an operator", MaxAge: 30 * time.Second}},
				{name: "fail/5.03 without Max-Age waits the default", cn: esttest.CNHeldDefault, retries: true,
					want: StatusError{Code: codes.ServiceUnavailable, Reason: "overloaded", MaxAge: DefaultMaxAge}},
				{name: "fail/4.00 without payload", cn: esttest.CNBare,
					want: StatusError{Code: codes.BadRequest}},
				{name: "fail/4.01 without a client certificate", cn: "SN-0001", noCert: true,
					want: StatusError{Code: codes.Unauthorized, Reason: "unauthenticated", Message: "no client certificate"}},
			} {
				t.Run(tc.name, func(t *testing.T) {
					c := withIDevID
					if tc.noCert {
						c.Certificate = nil
					}
					cl := dial(t, c)
					csr, _ := newCSR(t, tc.cn)
					cert, err := cl.Enroll(ctx, csr)
					if cert != nil {
						t.Fatalf("got a certificate with an error answer")
					}
					var se *StatusError
					if !errors.As(err, &se) {
						t.Fatalf("err = %v, want a *StatusError", err)
					}
					if *se != tc.want {
						t.Fatalf("StatusError = %+v, want %+v", *se, tc.want)
					}
					if se.Retryable() != tc.retries {
						t.Fatalf("Retryable = %v, want %v", se.Retryable(), tc.retries)
					}
				})
			}
			for _, tc := range []struct {
				name string
				cn   string
			}{
				{name: "fail/2.01 is not 2.04", cn: esttest.CNCreated},
				{name: "fail/2.04 with a payload that is no pkcs7", cn: esttest.CNGarbage},
			} {
				t.Run(tc.name, func(t *testing.T) {
					cl := dial(t, withIDevID)
					csr, _ := newCSR(t, tc.cn)
					cert, err := cl.Enroll(ctx, csr)
					if !errors.Is(err, ErrResponse) || cert != nil {
						t.Fatalf("Enroll = %v, %v; want ErrResponse", cert, err)
					}
				})
			}

			rogueRoot, err := esttest.NewRoot("Embark Root")
			if err != nil {
				t.Fatal(err)
			}
			rogueInter, err := rogueRoot.Sub("Embark Intermediate")
			if err != nil {
				t.Fatal(err)
			}
			rogueCert, err := rogueInter.Leaf("embark", p.Server.Leaf.IPAddresses, p.Server.Leaf.DNSNames, x509.ExtKeyUsageServerAuth)
			if err != nil {
				t.Fatal(err)
			}
			rogue := startServer(t, p, tr, &rogueCert)
			for _, tc := range []struct {
				name   string
				config Config
				want   error
				as     any
			}{
				{name: "fail/server not chained to the root",
					config: Config{Target: rogue, Roots: p.Roots(), Certificate: &idevid},
					want:   ErrHandshake, as: new(x509.UnknownAuthorityError)},
				{name: "fail/server under another name",
					config: Config{Target: target, Roots: p.Roots(), ServerName: "other.test", Certificate: &idevid},
					want:   ErrHandshake, as: new(x509.HostnameError)},
				{name: "fail/no roots",
					config: Config{Target: target, Certificate: &idevid},
					want:   ErrConfig},
				{name: "fail/bad certificate format",
					config: Config{Target: target, Roots: p.Roots(), CertFormat: 42},
					want:   ErrConfig},
				{name: "fail/plain coap",
					config: Config{Target: strings.Replace(target, string(tr)+"://", "coap://", 1), Roots: p.Roots()},
					want:   ErrTarget},
			} {
				t.Run(tc.name, func(t *testing.T) {
					tc.config.Timeout = 10 * time.Second
					cl, err := Dial(ctx, tc.config)
					if cl != nil {
						_ = cl.Close()
						t.Fatal("Dial returned a client")
					}
					if !errors.Is(err, tc.want) {
						t.Fatalf("err = %v, want %v", err, tc.want)
					}
					if tc.as != nil && !errors.As(err, tc.as) {
						t.Fatalf("err = %v, want it to hold a %T", err, tc.as)
					}
				})
			}
			t.Run("ok/server under its DNS name", func(t *testing.T) {
				cl := dial(t, Config{Target: target, Roots: p.Roots(), ServerName: "embark.test"})
				if _, err := cl.RootCert(ctx); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestCloseTwice(t *testing.T) {
	p := newPKI(t)
	target := startServer(t, p, DTLS, nil)
	cl := dial(t, Config{Target: target, Roots: p.Roots()})
	first := cl.Close()
	if second := cl.Close(); second != first {
		t.Fatalf("second Close = %v, first %v", second, first)
	}
	if _, err := cl.RootCert(context.Background()); err == nil {
		t.Fatal("request on a closed client succeeded")
	}
}
