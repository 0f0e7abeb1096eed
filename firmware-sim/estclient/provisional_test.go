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

	"github.com/embark-iot/embark/pkg/voucher"
)

type provPKI struct {
	root   *x509.Certificate
	server tls.Certificate
	device tls.Certificate
}

func newPKI(t *testing.T, serverEKU x509.ExtKeyUsage) provPKI {
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
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{serverEKU}}, root, rootKey)
	dev, devKey := mk(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "SN1", SerialNumber: "SN1"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, root, rootKey)
	return provPKI{root: root,
		server: tls.Certificate{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey, Leaf: srv},
		device: tls.Certificate{Certificate: [][]byte{dev.Raw}, PrivateKey: devKey, Leaf: dev}}
}

// stubRegistrar answers rv with the request's body reversed, and crts with
// 2.05, to tell a promoted session from a provisional one.
func stubRegistrar(t *testing.T, p provPKI) string {
	t.Helper()
	l, err := coapnet.NewDTLSListener("udp", "127.0.0.1:0", &piondtls.Config{
		Certificates: []tls.Certificate{p.server}, ClientAuth: piondtls.RequireAnyClientCert,
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret})
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
	_ = r.Handle(voucher.PathVoucherStatus, mux.HandlerFunc(func(w mux.ResponseWriter, _ *mux.Message) {
		_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
	}))
	srv := coapdtls.NewServer(options.WithMux(r))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)
	return "coaps://" + l.Addr().String()
}

func TestProvisional(t *testing.T) {
	p := newPKI(t, x509.ExtKeyUsageServerAuth)
	other := newPKI(t, x509.ExtKeyUsageServerAuth)
	target := stubRegistrar(t, p)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(t *testing.T) *Provisional {
		t.Helper()
		pr, err := DialProvisional(ctx, ProvisionalConfig{Target: target, Certificate: &p.device, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pr.Close() })
		return pr
	}

	t.Run("ok/voucher request then promotion", func(t *testing.T) {
		pr := dial(t)
		if !pr.PeerCertificates()[0].Equal(p.server.Leaf) {
			t.Fatal("the recorded chain is not the server's")
		}
		got, err := pr.RequestVoucher(ctx, []byte("abc"))
		if err != nil || string(got) != "cba" {
			t.Fatalf("rv: %q %v", got, err)
		}
		cl, chain, err := pr.Promote(p.root, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if !chain[len(chain)-1].Equal(p.root) {
			t.Fatal("verified chain does not end at the pinned root")
		}
		if err := cl.ReportVoucherStatus(ctx, voucher.Status{OK: true}); err != nil {
			t.Fatalf("telemetry on the promoted session: %v", err)
		}
		if _, err := pr.RequestVoucher(ctx, []byte("x")); !errors.Is(err, ErrProvisional) {
			t.Fatalf("a promoted provisional session still answers: %v", err)
		}
		if _, _, err := pr.Promote(p.root, time.Time{}); !errors.Is(err, ErrProvisional) {
			t.Fatalf("promoted twice: %v", err)
		}
		cl.Close()
	})
	t.Run("fail/promotion against another domain", func(t *testing.T) {
		pr := dial(t)
		if _, _, err := pr.Promote(other.root, time.Time{}); !errors.Is(err, voucher.ErrNotPinned) {
			t.Fatalf("Promote = %v, want ErrNotPinned", err)
		}
		if _, err := pr.RequestVoucher(ctx, []byte("x")); !errors.Is(err, ErrProvisional) {
			t.Fatalf("the session survived a failed promotion: %v", err)
		}
	})
	t.Run("fail/no IDevID", func(t *testing.T) {
		if _, err := DialProvisional(ctx, ProvisionalConfig{Target: target}); !errors.Is(err, ErrConfig) {
			t.Fatalf("DialProvisional = %v", err)
		}
	})
	t.Run("fail/server certificate for client authentication only", func(t *testing.T) {
		bad := newPKI(t, x509.ExtKeyUsageClientAuth)
		tg := stubRegistrar(t, bad)
		if _, err := DialProvisional(ctx, ProvisionalConfig{Target: tg, Certificate: &p.device, Timeout: 5 * time.Second}); !errors.Is(err, ErrHandshake) {
			t.Fatalf("DialProvisional = %v, want ErrHandshake", err)
		}
	})
	t.Run("fail/zero touch without anchors", func(t *testing.T) {
		if _, err := ZeroTouch(ctx, ZeroTouchConfig{ProvisionalConfig: ProvisionalConfig{Target: target, Certificate: &p.device}, Serial: "SN1"}); !errors.Is(err, ErrConfig) {
			t.Fatalf("ZeroTouch = %v", err)
		}
	})
}
