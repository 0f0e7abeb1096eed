package estcoap

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
	"io"
	"math/big"
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
	coapudp "github.com/plgd-dev/go-coap/v3/udp"

	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/registrar"
	"github.com/embark-iot/embark/pkg/voucher"
	"github.com/embark-iot/embark/pki"
)

// fakeRegistrar answers with what a test sets and records what it got.
type fakeRegistrar struct {
	mu      sync.Mutex
	voucher []byte
	err     error
	got     []registrar.Request
	status  []registrar.StatusKind
}

func (f *fakeRegistrar) RequestVoucher(_ context.Context, req registrar.Request) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, req)
	return f.voucher, f.err
}

func (f *fakeRegistrar) RecordStatus(_ context.Context, kind registrar.StatusKind, chain []*x509.Certificate, _ []byte, _ string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(chain) == 0 {
		return &onboard.Error{Reason: onboard.ReasonUnauthenticated, Msg: "no certificate"}
	}
	f.status = append(f.status, kind)
	return f.err
}

func (f *fakeRegistrar) set(v []byte, err error) {
	f.mu.Lock()
	f.voucher, f.err, f.got, f.status = v, err, nil, nil
	f.mu.Unlock()
}

func TestBRSKIResources(t *testing.T) {
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.ServerCertificate([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	reg := &fakeRegistrar{}
	s, err := New(Config{Core: &fakeCore{}, CACerts: ca.Chain, Certificate: srvCert, Registrar: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addr, err := s.ListenDTLS("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "SN1", SerialNumber: "SN1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	roots := x509.NewCertPool()
	roots.AddCert(ca.Root())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := coapdtls.Dial(addr.String(), &piondtls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, RootCAs: roots, ServerName: "localhost",
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	accept := func(f message.MediaType) message.Option {
		b := make([]byte, 4)
		n, _ := message.EncodeUint32(b, uint32(f))
		return message.Option{ID: message.Accept, Value: b[:n]}
	}
	unavailable := &onboard.Error{Reason: registrar.ReasonMASAUnavailable, Msg: "later", RetryAfter: 30 * time.Second}
	refused := &onboard.Error{Reason: registrar.ReasonVoucherRefused, Msg: "the manufacturer's MASA refused: wrong_owner: x"}
	untrusted := &onboard.Error{Reason: registrar.ReasonVoucherUntrusted, Msg: "countersignature"}
	badSig := &onboard.Error{Reason: onboard.ReasonBadSignature, Msg: "bad signature"}
	tests := []struct {
		name   string
		path   string
		post   bool
		cf     message.MediaType
		accept message.MediaType
		err    error
		code   codes.Code
		reason string
		maxAge uint32
	}{
		{name: "ok/voucher", path: "/.well-known/brski/rv", post: true, cf: FormatVoucherCOSE, code: codes.Changed},
		{name: "ok/voucher-with-accept", path: "/.well-known/brski/rv", post: true, cf: FormatVoucherCOSE, accept: FormatVoucherCOSE, code: codes.Changed},
		{name: "ok/voucher-status", path: "/.well-known/brski/vs", post: true, cf: FormatCBOR, code: codes.Changed},
		{name: "ok/enroll-status", path: "/.well-known/brski/es", post: true, cf: FormatCBOR, code: codes.Changed},
		{name: "fail/masa-unavailable", path: "/.well-known/brski/rv", post: true, cf: FormatVoucherCOSE, err: unavailable,
			code: codes.ServiceUnavailable, reason: "masa_unavailable", maxAge: 30},
		{name: "fail/masa-refused", path: "/.well-known/brski/rv", post: true, cf: FormatVoucherCOSE, err: refused,
			code: codes.Forbidden, reason: "voucher_refused"},
		{name: "fail/masa-answer-untrusted", path: "/.well-known/brski/rv", post: true, cf: FormatVoucherCOSE, err: untrusted,
			code: codes.BadGateway, reason: "voucher_untrusted"},
		{name: "fail/bad-signature", path: "/.well-known/brski/rv", post: true, cf: FormatVoucherCOSE, err: badSig,
			code: codes.BadRequest, reason: "bad_signature"},
		{name: "fail/wrong-content-format", path: "/.well-known/brski/rv", post: true, cf: FormatPKCS10, code: codes.UnsupportedMediaType, reason: "bad_request"},
		{name: "fail/wrong-accept", path: "/.well-known/brski/rv", post: true, cf: FormatVoucherCOSE, accept: FormatPKIXCert,
			code: codes.NotAcceptable, reason: "bad_request"},
		{name: "fail/get", path: "/.well-known/brski/rv", code: codes.MethodNotAllowed, reason: "bad_request"},
		{name: "fail/status-as-voucher-format", path: "/.well-known/brski/vs", post: true, cf: FormatVoucherCOSE,
			code: codes.UnsupportedMediaType, reason: "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg.set([]byte("the voucher"), tt.err)
			var opts []message.Option
			if tt.accept != 0 {
				opts = append(opts, accept(tt.accept))
			}
			var resp interface {
				Code() codes.Code
				Body() io.ReadSeeker
				GetOptionUint32(message.OptionID) (uint32, error)
			}
			if tt.post {
				m, err := cc.Post(ctx, tt.path, tt.cf, bytes.NewReader([]byte("request")), opts...)
				if err != nil {
					t.Fatal(err)
				}
				resp = m
			} else {
				m, err := cc.Get(ctx, tt.path)
				if err != nil {
					t.Fatal(err)
				}
				resp = m
			}
			var body []byte
			if b := resp.Body(); b != nil {
				body, _ = io.ReadAll(b)
			}
			if resp.Code() != tt.code {
				t.Fatalf("code %v (%s), want %v", resp.Code(), body, tt.code)
			}
			if tt.reason != "" && !strings.HasPrefix(string(body), tt.reason+":") {
				t.Fatalf("diagnostic %q, want reason %s", body, tt.reason)
			}
			ma, err := resp.GetOptionUint32(message.MaxAge)
			if (err == nil) != (tt.maxAge > 0) || (tt.maxAge > 0 && ma != tt.maxAge) {
				t.Fatalf("Max-Age %d (%v), want %d", ma, err, tt.maxAge)
			}
			reg.mu.Lock()
			defer reg.mu.Unlock()
			if tt.code == codes.Changed && tt.path == "/.well-known/brski/rv" {
				if string(body) != "the voucher" || len(reg.got) != 1 || len(reg.got[0].Chain) != 1 || string(reg.got[0].Body) != "request" ||
					reg.got[0].Transport != "coaps" {
					t.Fatalf("answer %q, registrar saw %+v", body, reg.got)
				}
			}
			if tt.code == codes.UnsupportedMediaType || tt.code == codes.NotAcceptable || tt.code == codes.MethodNotAllowed {
				if len(reg.got) != 0 || len(reg.status) != 0 {
					t.Fatal("a refused request reached the registrar")
				}
			}
		})
	}
}

// TestPlainBRSKI: the plain CoAP listener serves rv alone, identifies the
// device by the signed request's x5chain, and refuses what does not
// verify before the registrar sees it.
func TestPlainBRSKI(t *testing.T) {
	ca, err := pki.Init(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.ServerCertificate([]string{"localhost"}, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := New(Config{Core: &fakeCore{}, CACerts: ca.Chain, Certificate: srvCert}); err != nil {
		t.Fatal(err)
	} else if _, err := s.ListenPlain("127.0.0.1:0"); !errors.Is(err, ErrNoRegistrar) {
		t.Fatalf("ListenPlain without a registrar = %v", err)
	}
	reg := &fakeRegistrar{}
	s, err := New(Config{Core: &fakeCore{}, CACerts: ca.Chain, Certificate: srvCert, Registrar: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	addr, err := s.ListenPlain("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(9), Subject: pkix.Name{CommonName: "SN1", SerialNumber: "SN1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	leaf, _ := x509.ParseCertificate(der)
	signer, err := voucher.NewRequestSigner(key, []*x509.Certificate{leaf})
	if err != nil {
		t.Fatal(err)
	}
	signed, err := signer.SignPledgeRequest(voucher.PledgeRequest{SerialNumber: "SN1", Nonce: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Clone(signed)
	altered[bytes.Index(altered, []byte("0123456789abcdef"))] ^= 1
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := coapudp.Dial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	tests := []struct {
		name   string
		path   string
		cf     message.MediaType
		body   []byte
		code   codes.Code
		reason string
	}{
		{name: "ok/signed voucher request", path: voucher.PathVoucherRequest, cf: FormatVoucherCOSE, body: signed, code: codes.Changed},
		{name: "fail/altered after signing", path: voucher.PathVoucherRequest, cf: FormatVoucherCOSE, body: altered,
			code: codes.BadRequest, reason: "bad_signature"},
		{name: "fail/unsigned", path: voucher.PathVoucherRequest, cf: FormatVoucherCOSE, body: []byte{0xa0},
			code: codes.BadRequest, reason: "bad_request"},
		{name: "fail/voucher status", path: voucher.PathVoucherStatus, cf: FormatCBOR, body: []byte{0xa0}, code: codes.NotFound, reason: "bad_request"},
		{name: "fail/enroll", path: "/.well-known/est/sen", cf: FormatPKCS10, body: []byte("csr"), code: codes.NotFound, reason: "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg.set([]byte("the voucher"), nil)
			m, err := cc.Post(ctx, tt.path, tt.cf, bytes.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			var body []byte
			if b := m.Body(); b != nil {
				body, _ = io.ReadAll(b)
			}
			if m.Code() != tt.code {
				t.Fatalf("code %v (%s), want %v", m.Code(), body, tt.code)
			}
			if tt.reason != "" && !strings.HasPrefix(string(body), tt.reason+":") {
				t.Fatalf("diagnostic %q, want reason %s", body, tt.reason)
			}
			reg.mu.Lock()
			defer reg.mu.Unlock()
			if tt.code != codes.Changed {
				if len(reg.got) != 0 || len(reg.status) != 0 {
					t.Fatalf("a refused request reached the registrar: %+v", reg.got)
				}
				return
			}
			if string(body) != "the voucher" || len(reg.got) != 1 || len(reg.got[0].Chain) != 1 || !reg.got[0].Chain[0].Equal(leaf) ||
				!bytes.Equal(reg.got[0].Body, signed) || reg.got[0].Transport != "coap" {
				t.Fatalf("answer %q, registrar saw %+v", body, reg.got)
			}
		})
	}
}
