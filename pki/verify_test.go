package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"testing"
	"time"
)

func TestVerifyLDevID(t *testing.T) {
	ca, clk, _ := newTestCA(t)
	// sameName is another CA with the same names: issuer matches, key does not.
	sameName, _, _ := newTestCA(t)
	otherName, _, _ := newTestCA(t, WithName("Other"))

	issueFrom := func(t *testing.T, from *CA) *x509.Certificate {
		t.Helper()
		c, err := from.IssueLDevID(LDevIDRequest{PublicKey: &p256Key(t).PublicKey, DeviceID: testDevice, Lifetime: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	now := clk.Now()

	tests := []struct {
		name    string
		leaf    func(t *testing.T) *x509.Certificate
		at      time.Time
		wantErr error
	}{
		{name: "ok/just issued", leaf: func(t *testing.T) *x509.Certificate { return issueFrom(t, ca) }, at: now},
		{name: "ok/backdated start", leaf: func(t *testing.T) *x509.Certificate { return issueFrom(t, ca) }, at: now.Add(-time.Minute)},
		{name: "ok/last second", leaf: func(t *testing.T) *x509.Certificate { return issueFrom(t, ca) }, at: now.Add(time.Hour)},
		{name: "fail/foreign CA with the same names", leaf: func(t *testing.T) *x509.Certificate { return issueFrom(t, sameName) }, at: now, wantErr: ErrNotIssuedHere},
		{name: "fail/foreign CA", leaf: func(t *testing.T) *x509.Certificate { return issueFrom(t, otherName) }, at: now, wantErr: ErrNotIssuedHere},
		{name: "fail/the intermediate itself", leaf: func(*testing.T) *x509.Certificate { return ca.Intermediate() }, at: now, wantErr: ErrNotIssuedHere},
		{name: "fail/nil", leaf: func(*testing.T) *x509.Certificate { return nil }, at: now, wantErr: ErrNotIssuedHere},
		{name: "fail/expired", leaf: func(t *testing.T) *x509.Certificate { return issueFrom(t, ca) }, at: now.Add(time.Hour + time.Second), wantErr: ErrExpired},
		{name: "fail/not yet valid", leaf: func(t *testing.T) *x509.Certificate { return issueFrom(t, ca) }, at: now.Add(-time.Minute - time.Second), wantErr: ErrNotYetValid},
		{name: "fail/server certificate", leaf: func(t *testing.T) *x509.Certificate {
			c, err := ca.ServerCertificate([]string{"embark.example"}, nil, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			return c.Leaf
		}, at: now, wantErr: ErrNotLDevID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ca.VerifyLDevID(tt.leaf(t), tt.at)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyLDevID: %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestDeviceIDOf(t *testing.T) {
	urn := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	tests := []struct {
		name   string
		cert   *x509.Certificate
		wantID string
		wantOK bool
	}{
		{name: "ok/one URN", cert: &x509.Certificate{URIs: []*url.URL{urn(testDevice)}}, wantID: testDevice, wantOK: true},
		{name: "ok/URN beside an https URI", cert: &x509.Certificate{URIs: []*url.URL{urn("https://acme.example/x"), urn(testDevice)}}, wantID: testDevice, wantOK: true},
		{name: "fail/nil", cert: nil},
		{name: "fail/no URI", cert: &x509.Certificate{DNSNames: []string{"a.example"}, IPAddresses: []net.IP{net.IPv6loopback}}},
		{name: "fail/only https", cert: &x509.Certificate{URIs: []*url.URL{urn("https://acme.example/x")}}},
		{name: "fail/two URNs", cert: &x509.Certificate{URIs: []*url.URL{urn(testDevice), urn("urn:dev:embark:acme:2")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := DeviceIDOf(tt.cert)
			if id != tt.wantID || ok != tt.wantOK {
				t.Errorf("DeviceIDOf = %q, %v; want %q, %v", id, ok, tt.wantID, tt.wantOK)
			}
		})
	}
}
