package estcoap

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	coaptcp "github.com/plgd-dev/go-coap/v3/tcp"
	"github.com/smallstep/pkcs7"

	"github.com/embark-iot/embark/pkg/crl"
	"github.com/embark-iot/embark/pki"
)

// TestCARolloverSeams: the server certificate of new sessions follows
// GetCertificate, /crts follows RefreshCACerts, and /embark/crl takes the
// issuer from the aki query parameter.
func TestCARolloverSeams(t *testing.T) {
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	names, ips := []string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}
	first, err := ca.ServerCertificate(names, ips, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	current := &first
	var crlCalls []string
	s, err := New(Config{
		Core:        &fakeCore{},
		CACerts:     ca.CACerts,
		Certificate: first,
		GetCertificate: func() (*tls.Certificate, error) {
			mu.Lock()
			defer mu.Unlock()
			return current, nil
		},
		CRLOf: func(_ context.Context, issuer string) ([]byte, error) {
			mu.Lock()
			crlCalls = append(crlCalls, issuer)
			mu.Unlock()
			if issuer == "" || issuer == ca.ActiveIssuer().ID {
				return []byte("crl of " + issuer), nil
			}
			return nil, fmt.Errorf("issuer %s: %w", issuer, crl.ErrUnknownIssuer)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ua, err := s.ListenDTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ta, err := s.ListenTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	// serverLeaf opens a DTLS and a TLS session and returns the leaf each
	// was shown; it also fetches /crts over DTLS.
	serverLeaves := func(t *testing.T) (dtlsLeaf, tlsLeaf *x509.Certificate, crts []*x509.Certificate) {
		t.Helper()
		var seen *x509.Certificate
		dc, err := coapdtls.Dial(ua.String(), &piondtls.Config{RootCAs: roots, ServerName: "127.0.0.1",
			ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
			CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8},
			VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
				c, perr := x509.ParseCertificate(raw[0])
				seen = c
				return perr
			}})
		if err != nil {
			t.Fatal(err)
		}
		defer dc.Close()
		m, err := dc.Get(ctx(t), "/est/crts", acceptOpt(FormatPKCS7Certs))
		if err != nil {
			t.Fatal(err)
		}
		p7, err := pkcs7.Parse(body(t, m))
		if err != nil {
			t.Fatal(err)
		}
		tc, err := tls.Dial("tcp", ta.String(), &tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"coap"}})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		return seen, tc.ConnectionState().PeerCertificates[0], p7.Certificates
	}

	t.Run("ok/before-rollover", func(t *testing.T) {
		d, l, crts := serverLeaves(t)
		if !d.Equal(first.Leaf) || !l.Equal(first.Leaf) || len(crts) != 2 {
			t.Fatalf("sessions see %s / %s, /crts %d certificates", d.Subject, l.Subject, len(crts))
		}
	})
	if _, err := ca.Rollover(pki.RolloverOptions{}); err != nil {
		t.Fatal(err)
	}
	second, err := ca.ServerCertificate(names, ips, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ok/after-rollover", func(t *testing.T) {
		mu.Lock()
		current = &second
		mu.Unlock()
		if err := s.RefreshCACerts(); err != nil {
			t.Fatal(err)
		}
		d, l, crts := serverLeaves(t)
		if !d.Equal(second.Leaf) || !l.Equal(second.Leaf) || second.Leaf.CheckSignatureFrom(ca.Intermediate()) != nil {
			t.Fatal("new sessions do not get the server certificate of the new intermediate")
		}
		if len(crts) != 3 || !crts[0].Equal(ca.Intermediate()) || !crts[2].Equal(ca.Root()) {
			t.Fatalf("/crts after the rollover: %d certificates", len(crts))
		}
	})

	cc, err := coaptcp.Dial(ta.String(), options.WithTLS(&tls.Config{RootCAs: roots, ServerName: "localhost", NextProtos: []string{"coap"}}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	active := ca.ActiveIssuer().ID
	cases := []struct {
		name, query string
		code        codes.Code
		want        string
		call        string // the issuer passed to CRLOf; "-" for no call
	}{
		{"ok/default", "", codes.Content, "crl of ", ""},
		{"ok/aki", "aki=" + active, codes.Content, "crl of " + active, active},
		{"fail/unknown-aki", "aki=" + strings.Repeat("0", 40), codes.NotFound, "no CRL for intermediate", strings.Repeat("0", 40)},
		{"fail/not-hex", "aki=xyz", codes.BadRequest, "aki: want the hex", "-"},
		{"fail/too-long", "aki=" + strings.Repeat("a", 65), codes.BadRequest, "aki: want the hex", "-"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mu.Lock()
			crlCalls = nil
			mu.Unlock()
			var opts []message.Option
			if tc.query != "" {
				opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte(tc.query)})
			}
			m, err := cc.Get(ctx(t), "/embark/crl", opts...)
			if err != nil {
				t.Fatal(err)
			}
			if b := string(body(t, m)); m.Code() != tc.code || !strings.Contains(b, tc.want) {
				t.Fatalf("GET /embark/crl?%s = %s %q, want %s with %q", tc.query, m.Code(), b, tc.code, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case tc.call == "-" && len(crlCalls) != 0:
				t.Fatalf("bad input reached CRLOf: %q", crlCalls)
			case tc.call != "-" && (len(crlCalls) != 1 || crlCalls[0] != tc.call):
				t.Fatalf("CRLOf calls %q, want [%q]", crlCalls, tc.call)
			}
		})
	}
}
