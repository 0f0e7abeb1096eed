package estclient

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
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapnet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	coapudp "github.com/plgd-dev/go-coap/v3/udp"

	"github.com/embark-iot/embark/pkg/voucher"
)

func TestParseVoucherTarget(t *testing.T) {
	tests := []struct {
		name, in, addr string
		err            error
	}{
		{name: "ok/default port", in: "coap://127.0.0.1", addr: "127.0.0.1:5683"},
		{name: "ok/port", in: "coap://[::1]:15683", addr: "[::1]:15683"},
		{name: "fail/coaps is not plain", in: "coaps://127.0.0.1", err: ErrTarget},
		{name: "fail/path", in: "coap://127.0.0.1/.well-known/brski/rv", err: ErrTarget},
		{name: "fail/port 0", in: "coap://127.0.0.1:0", err: ErrTarget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseVoucherTarget(tt.in)
			if !errors.Is(err, tt.err) || (err == nil && got.Addr() != tt.addr) {
				t.Fatalf("ParseVoucherTarget(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
	if _, err := ParseTarget("coap://127.0.0.1"); !errors.Is(err, ErrTarget) {
		t.Fatalf("Dial's targets take plain CoAP: %v", err)
	}
}

type testPKI struct {
	root   *x509.Certificate
	server tls.Certificate
	device tls.Certificate
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	mk := func(tmpl, parent *x509.Certificate, pkey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl.NotBefore, tmpl.NotAfter, tmpl.BasicConstraintsValid = time.Now().Add(-time.Hour), time.Now().Add(time.Hour), true
		if parent == nil {
			parent, pkey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, pkey)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		return c, key
	}
	root, rootKey := mk(&x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"}, IsCA: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	srv, srvKey := mk(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "registrar"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, root, rootKey)
	dev, devKey := mk(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "SN1", SerialNumber: "SN1"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, root, rootKey)
	return testPKI{root: root,
		server: tls.Certificate{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey, Leaf: srv},
		device: tls.Certificate{Certificate: [][]byte{dev.Raw}, PrivateKey: devKey, Leaf: dev}}
}

// stubPlain answers rv over plain CoAP with the request's body reversed,
// and anything else with 4.04.
func stubPlain(t *testing.T) string {
	t.Helper()
	l, err := coapnet.NewListenUDP("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	_ = r.Handle(voucher.PathVoucherRequest, mux.HandlerFunc(func(w mux.ResponseWriter, m *mux.Message) {
		b, _ := io.ReadAll(m.Body())
		for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
			b[i], b[j] = b[j], b[i]
		}
		_ = w.SetResponse(codes.Changed, FormatVoucherCOSE, bytes.NewReader(b))
	}))
	srv := coapudp.NewServer(options.WithMux(r))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return "coap://" + l.LocalAddr().String()
}

// stubDTLS is a DTLS server with the PKI's server certificate.
func stubDTLS(t *testing.T, p testPKI) string {
	t.Helper()
	l, err := coapnet.NewDTLSListener("udp", "127.0.0.1:0", &piondtls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: piondtls.RequireAnyClientCert,
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret})
	if err != nil {
		t.Fatal(err)
	}
	r := mux.NewRouter()
	_ = r.Handle(voucher.PathVoucherStatus, mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	}))
	srv := coapdtls.NewServer(options.WithMux(r))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return "coaps://" + l.Addr().String()
}

func TestRequestVoucher(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plain := stubPlain(t)
	p := newTestPKI(t)
	other := newTestPKI(t)
	dtls := stubDTLS(t, p)

	t.Run("ok/voucher over plain CoAP", func(t *testing.T) {
		got, err := RequestVoucher(ctx, plain, []byte("abc"), 10*time.Second)
		if err != nil || string(got) != "cba" {
			t.Fatalf("rv: %q %v", got, err)
		}
	})
	t.Run("fail/secure target", func(t *testing.T) {
		if _, err := RequestVoucher(ctx, dtls, []byte("abc"), time.Second); !errors.Is(err, ErrTarget) {
			t.Fatalf("RequestVoucher = %v, want ErrTarget", err)
		}
	})
	t.Run("ok/handshake verified against the pinned root", func(t *testing.T) {
		roots := x509.NewCertPool()
		roots.AddCert(p.root)
		cl, err := Dial(ctx, Config{Target: dtls, Roots: roots, Certificate: &p.device, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.ReportVoucherStatus(ctx, voucher.Status{OK: true}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("fail/handshake with a server of another domain", func(t *testing.T) {
		roots := x509.NewCertPool()
		roots.AddCert(other.root)
		_, err := Dial(ctx, Config{Target: dtls, Roots: roots, Certificate: &p.device, Timeout: 10 * time.Second})
		if !errors.Is(err, ErrHandshake) || !certificateRefused(err) {
			t.Fatalf("Dial = %v, want a refused certificate", err)
		}
	})
	anchors := []*x509.Certificate{p.root}
	for _, tt := range []struct {
		name string
		c    ZeroTouchConfig
		err  error
	}{
		{"fail/zero touch without anchors", ZeroTouchConfig{VoucherTarget: plain, Config: Config{Target: dtls, Certificate: &p.device}, Serial: "SN1"}, ErrConfig},
		{"fail/zero touch with roots", ZeroTouchConfig{VoucherTarget: plain, Config: Config{Target: dtls, Certificate: &p.device, Roots: x509.NewCertPool()},
			Serial: "SN1", Anchors: anchors}, ErrConfig},
		{"fail/zero touch with a secure voucher target", ZeroTouchConfig{VoucherTarget: dtls, Config: Config{Target: dtls, Certificate: &p.device},
			Serial: "SN1", Anchors: anchors}, ErrTarget},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ZeroTouch(ctx, tt.c); !errors.Is(err, tt.err) {
				t.Fatalf("ZeroTouch = %v, want %v", err, tt.err)
			}
		})
	}
}
