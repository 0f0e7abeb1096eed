package idevid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func mkCert(t *testing.T, tmpl *x509.Certificate, parent *ca) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = serial
	signer, issuer := key, tmpl
	if parent != nil {
		signer, issuer = parent.key, parent.cert
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{cert: c, key: key}
}

func caTmpl(cn string, nb, na time.Time) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotBefore: nb, NotAfter: na, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
}

func leafTmpl(serial string, nb, na time.Time) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: serial, SerialNumber: serial}, NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

func TestVerify(t *testing.T) {
	noExpiry := time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	root := mkCert(t, caTmpl("Acme Root", t0.AddDate(-1, 0, 0), t0.AddDate(20, 0, 0)), nil)
	inter := mkCert(t, caTmpl("Acme IDevID CA", t0.AddDate(-1, 0, 0), t0.AddDate(15, 0, 0)), root)
	otherRoot := mkCert(t, caTmpl("Other Root", t0.AddDate(-1, 0, 0), t0.AddDate(20, 0, 0)), nil)
	otherInter := mkCert(t, caTmpl("Acme IDevID CA", t0.AddDate(-1, 0, 0), t0.AddDate(15, 0, 0)), otherRoot)
	expiredInter := mkCert(t, caTmpl("Acme Old CA", t0.AddDate(-3, 0, 0), t0.AddDate(0, 0, -1)), root)

	good := mkCert(t, leafTmpl("SN1", t0.Add(-time.Hour), noExpiry), inter)
	expired := mkCert(t, leafTmpl("SN2", t0.AddDate(-1, 0, 0), t0.Add(-time.Minute)), inter)
	future := mkCert(t, leafTmpl("SN3", t0.Add(time.Hour), noExpiry), inter)
	foreign := mkCert(t, leafTmpl("SN4", t0.Add(-time.Hour), noExpiry), otherInter)
	underExpired := mkCert(t, leafTmpl("SN5", t0.AddDate(-2, 0, 0), noExpiry), expiredInter)
	caLeaf := mkCert(t, caTmpl("SN6", t0.Add(-time.Hour), noExpiry), inter)

	mfr := device.Manufacturer{Name: "acme", Roots: [][]byte{root.cert.Raw}}
	mfrWithInter := device.Manufacturer{Name: "acme", Roots: [][]byte{root.cert.Raw}, Intermediates: [][]byte{inter.cert.Raw}}

	tests := []struct {
		name    string
		mfrs    []device.Manufacturer
		opts    []Option
		chain   []*x509.Certificate
		want    error
		expired bool
	}{
		{"ok/leaf-and-intermediate", []device.Manufacturer{mfr}, nil, []*x509.Certificate{good.cert, inter.cert}, nil, false},
		{"ok/leaf-only-known-intermediate", []device.Manufacturer{mfrWithInter}, nil, []*x509.Certificate{good.cert}, nil, false},
		{"ok/expired-allowed", []device.Manufacturer{mfr}, []Option{AllowExpired(true)}, []*x509.Certificate{expired.cert, inter.cert}, nil, true},
		{"fail/no-certificate", []device.Manufacturer{mfr}, nil, nil, ErrNoCertificate, false},
		{"fail/leaf-only-unknown-intermediate", []device.Manufacturer{mfr}, nil, []*x509.Certificate{good.cert}, ErrUntrusted, false},
		{"fail/untrusted-root", []device.Manufacturer{mfr}, nil, []*x509.Certificate{foreign.cert, otherInter.cert}, ErrUntrusted, false},
		{"fail/same-name-other-ca", []device.Manufacturer{mfrWithInter}, nil, []*x509.Certificate{foreign.cert, otherInter.cert}, ErrUntrusted, false},
		{"fail/expired-leaf", []device.Manufacturer{mfr}, nil, []*x509.Certificate{expired.cert, inter.cert}, ErrExpired, false},
		{"fail/not-yet-valid", []device.Manufacturer{mfr}, nil, []*x509.Certificate{future.cert, inter.cert}, ErrNotYetValid, false},
		{"fail/expired-intermediate", []device.Manufacturer{mfr}, nil, []*x509.Certificate{underExpired.cert, expiredInter.cert}, ErrExpired, false},
		{"fail/ca-as-leaf", []device.Manufacturer{mfr}, nil, []*x509.Certificate{caLeaf.cert, inter.cert}, ErrNotDeviceCert, false},
		{"fail/no-manufacturers", nil, nil, []*x509.Certificate{good.cert, inter.cert}, ErrUntrusted, false},
		{"fail/distrusted-manufacturer", []device.Manufacturer{{Name: "acme", Roots: [][]byte{root.cert.Raw}, Distrusted: "CA key leaked"}}, nil,
			[]*x509.Certificate{good.cert, inter.cert}, ErrUntrusted, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(tt.mfrs, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			// Twice: the second call takes the cached intermediate.
			for i := 0; i < 2; i++ {
				res, err := v.Verify(tt.chain, t0)
				if !errors.Is(err, tt.want) {
					t.Fatalf("call %d: err = %v, want %v", i, err, tt.want)
				}
				if err == nil && (res.Manufacturer != "acme" || res.Expired != tt.expired) {
					t.Fatalf("call %d: result = %+v", i, res)
				}
			}
		})
	}
}

func TestCachedIntermediateStillChecksTime(t *testing.T) {
	root := mkCert(t, caTmpl("Acme Root", t0.AddDate(-1, 0, 0), t0.AddDate(20, 0, 0)), nil)
	inter := mkCert(t, caTmpl("Acme IDevID CA", t0.AddDate(-1, 0, 0), t0.AddDate(1, 0, 0)), root)
	leaf := mkCert(t, leafTmpl("SN1", t0.Add(-time.Hour), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)), inter)
	v, err := New([]device.Manufacturer{{Name: "acme", Roots: [][]byte{root.cert.Raw}}})
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf.cert, inter.cert}
	if _, err := v.Verify(chain, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(chain, t0.AddDate(2, 0, 0)); !errors.Is(err, ErrExpired) {
		t.Fatalf("after the intermediate expired: err = %v, want ErrExpired", err)
	}
}

func BenchmarkVerify(b *testing.B) {
	t := &testing.T{}
	root := mkCert(t, caTmpl("Acme Root", t0.AddDate(-1, 0, 0), t0.AddDate(20, 0, 0)), nil)
	inter := mkCert(t, caTmpl("Acme IDevID CA", t0.AddDate(-1, 0, 0), t0.AddDate(15, 0, 0)), root)
	leaf := mkCert(t, leafTmpl("SN1", t0.Add(-time.Hour), t0.AddDate(30, 0, 0)), inter)
	chain := []*x509.Certificate{leaf.cert, inter.cert}
	v, _ := New([]device.Manufacturer{{Name: "acme", Roots: [][]byte{root.cert.Raw}}})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.Verify(chain, t0); err != nil {
				b.Fatal(err)
			}
		}
	})
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	inters := x509.NewCertPool()
	inters.AddCert(inter.cert)
	b.Run("x509.Verify", func(b *testing.B) {
		for b.Loop() {
			if _, err := leaf.cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inters, CurrentTime: t0,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// A leaf whose signature was checked once is not checked again, but a
// certificate that differs in any byte (another signature) is; time is
// checked on every call.
func TestCachedLeaf(t *testing.T) {
	root := mkCert(t, caTmpl("Acme Root", t0.AddDate(-1, 0, 0), t0.AddDate(20, 0, 0)), nil)
	inter := mkCert(t, caTmpl("Acme IDevID CA", t0.AddDate(-1, 0, 0), t0.AddDate(15, 0, 0)), root)
	leaf := mkCert(t, leafTmpl("SN1", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), inter)
	v, err := New([]device.Manufacturer{{Name: "acme", Roots: [][]byte{root.cert.Raw}}})
	if err != nil {
		t.Fatal(err)
	}
	chain := []*x509.Certificate{leaf.cert, inter.cert}
	for range 2 {
		if _, err := v.Verify(chain, t0); err != nil {
			t.Fatal(err)
		}
	}
	forged := *leaf.cert
	forged.Raw = append([]byte(nil), leaf.cert.Raw...)
	forged.Raw[len(forged.Raw)-1] ^= 0x01 // a byte of the signature
	forged.Signature = append([]byte(nil), leaf.cert.Signature...)
	forged.Signature[len(forged.Signature)-1] ^= 0x01
	if _, err := v.Verify([]*x509.Certificate{&forged, inter.cert}, t0); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("a leaf with another signature: %v, want ErrUntrusted", err)
	}
	if _, err := v.Verify(chain, t0.AddDate(2, 0, 0)); !errors.Is(err, ErrExpired) {
		t.Fatalf("a cached leaf after its expiry: %v, want ErrExpired", err)
	}
}
