package voucher

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"sync"
	"testing"
	"time"
)

func TestLinkTLS(t *testing.T) {
	q := newTestPKI(t)
	srvCert := tls.Certificate{Certificate: [][]byte{q.server.Raw, q.domainInter.Raw}, PrivateKey: q.serverKey, Leaf: q.server}
	regCert := tls.Certificate{Certificate: [][]byte{q.registrar.Raw, q.domainInter.Raw}, PrivateKey: q.registrarKey, Leaf: q.registrar}
	var mu sync.Mutex
	var seen []tls.CurveID
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ServerTLSConfig(srvCert, func(cs tls.ConnectionState) {
		mu.Lock()
		seen = append(seen, cs.CurveID)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("x"))
			}()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(q.domainRoot)

	dial := func(cfg *tls.Config) (tls.ConnectionState, error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(&d, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return tls.ConnectionState{}, err
		}
		defer c.Close()
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			return tls.ConnectionState{}, err
		}
		return c.ConnectionState(), nil
	}
	hybrid := ClientTLSConfig(&regCert, roots, "localhost")
	classical := hybrid.Clone()
	classical.CurvePreferences = []tls.CurveID{tls.X25519}
	classical.VerifyConnection = nil
	tls12 := hybrid.Clone()
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	tls12.VerifyConnection = nil
	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"ok/hybrid", hybrid, true},
		{"ok/hybrid-without-client-certificate", ClientTLSConfig(nil, roots, "localhost"), true},
		{"fail/x25519-only", classical, false},
		{"fail/tls12-only", tls12, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := dial(tt.cfg)
			if tt.ok != (err == nil) {
				t.Fatalf("dial: %v", err)
			}
			if tt.ok && (cs.CurveID != tls.X25519MLKEM768 || cs.Version != tls.VersionTLS13) {
				t.Fatalf("negotiated %s", DescribeTLS(cs))
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 || seen[0] != tls.X25519MLKEM768 || seen[1] != tls.X25519MLKEM768 {
		t.Fatalf("server saw %v", seen)
	}
	if err := CheckHybrid(tls.ConnectionState{Version: tls.VersionTLS13, CurveID: tls.X25519}); !errors.Is(err, ErrClassicalTLS) {
		t.Fatalf("CheckHybrid(X25519) = %v", err)
	}
	// A client refuses a server that would negotiate a classical group.
	classicalSrv := ServerTLSConfig(srvCert, nil)
	classicalSrv.CurvePreferences = []tls.CurveID{tls.X25519}
	classicalSrv.VerifyConnection = nil
	ln2, err := tls.Listen("tcp", "127.0.0.1:0", classicalSrv)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go func() {
		c, err := ln2.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	if c, err := tls.Dial("tcp", ln2.Addr().String(), hybrid); err == nil {
		c.Close()
		t.Fatal("the hybrid client accepted a classical server")
	}
}
