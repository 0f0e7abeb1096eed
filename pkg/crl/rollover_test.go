package crl

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"maps"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pki"
)

// issue issues an LDevID from the CA's active intermediate, stores it in
// the registry and returns its serial.
func (e *env) issue(t *testing.T, n string) (string, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := e.ca.IssueLDevID(pki.LDevIDRequest{PublicKey: &key.PublicKey, DeviceID: "urn:dev:embark:acme:" + n, Lifetime: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	serial := SerialHex(c.SerialNumber)
	if err := e.st.Update(context.Background(), func(tx store.Tx) error {
		return tx.PutCertificate(device.Certificate{Serial: serial, DeviceID: "acme:" + n, DER: c.Raw,
			Status: device.CertIssued, NotBefore: c.NotBefore, NotAfter: c.NotAfter})
	}); err != nil {
		t.Fatal(err)
	}
	return serial, c
}

// opensslVerifyChain checks with openssl that der verifies against chain.
func opensslVerifyChain(t *testing.T, der []byte, chain []*x509.Certificate) {
	t.Helper()
	bin, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	dir := t.TempDir()
	var pemChain []byte
	for _, c := range chain {
		pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	crlPath, caPath := filepath.Join(dir, "crl.der"), filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(crlPath, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caPath, pemChain, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "crl", "-inform", "DER", "-in", crlPath, "-CAfile", caPath, "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
}

func TestPerIssuer(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p := e.publisher(t)
	if _, err := p.Regenerate(ctx); err != nil { // number 1 of generation 1
		t.Fatal(err)
	}
	oldSerial, _ := e.issue(t, "OLD")
	first := e.ca.ActiveIssuer()
	second, err := e.ca.Rollover(pki.RolloverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	newSerial, _ := e.issue(t, "NEW")
	e.revoke(t, oldSerial, testEpoch.Add(48*time.Hour), ReasonKeyCompromise)
	e.revoke(t, newSerial, testEpoch.Add(48*time.Hour), ReasonSuperseded)
	e.revoke(t, "5eed", testEpoch.Add(48*time.Hour), ReasonUnspecified) // not in the registry

	t.Run("ok/records-name-their-issuer", func(t *testing.T) {
		err := e.st.View(ctx, func(r store.Reader) error {
			for serial, want := range map[string]string{oldSerial: first.ID, newSerial: second.ID, "5eed": ""} {
				val, err := r.Record(KindRevoked, serial)
				if err != nil {
					return err
				}
				rev, err := decodeRevocation(val)
				if err != nil {
					return err
				}
				if rev.Issuer != want {
					t.Errorf("%s: issuer %q, want %q", serial, rev.Issuer, want)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})

	der, err := p.Regenerate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		issuer pki.Issuer
		sel    string
		number int64
		listed map[string]int
	}{
		{"ok/previous", first, first.ID, 2, map[string]int{oldSerial: ReasonKeyCompromise, "5eed": ReasonUnspecified}},
		{"ok/active", second, second.ID, 1, map[string]int{newSerial: ReasonSuperseded, "5eed": ReasonUnspecified}},
		{"ok/active-by-default", second, "", 1, map[string]int{newSerial: ReasonSuperseded, "5eed": ReasonUnspecified}},
		{"ok/by-prefix", first, strings.ToUpper(first.ID[:12]), 2, map[string]int{oldSerial: ReasonKeyCompromise, "5eed": ReasonUnspecified}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := p.CurrentFor(ctx, tc.sel)
			if err != nil {
				t.Fatal(err)
			}
			rl, err := x509.ParseRevocationList(got)
			if err != nil {
				t.Fatal(err)
			}
			if err := rl.CheckSignatureFrom(tc.issuer.Certificate); err != nil {
				t.Fatalf("CRL not signed by %s: %v", tc.issuer.Subject, err)
			}
			if rl.Number.Cmp(big.NewInt(tc.number)) != 0 {
				t.Errorf("number %v, want %d", rl.Number, tc.number)
			}
			if l := listed(rl); !maps.Equal(l, tc.listed) {
				t.Errorf("listed %v, want %v", l, tc.listed)
			}
			var chain []*x509.Certificate
			for _, ch := range e.ca.Chains() {
				if ch[0].Equal(tc.issuer.Certificate) {
					chain = ch
				}
			}
			opensslVerifyChain(t, got, chain)
		})
	}
	if rl, _ := x509.ParseRevocationList(der); rl == nil || rl.CheckSignatureFrom(second.Certificate) != nil {
		t.Error("Regenerate must return the active intermediate's CRL")
	}

	t.Run("ok/numbers-persisted-per-issuer", func(t *testing.T) {
		meta := e.records(t, KindMeta)
		want := map[string]string{"number": "2", "number/" + second.ID: "1"}
		if !maps.Equal(meta, want) {
			t.Errorf("meta %v, want %v", meta, want)
		}
	})

	fails := []struct {
		name, sel string
	}{
		{"fail/unknown", strings.Repeat("ab", 20)},
		{"fail/too-short", first.ID[:4]},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			meta := e.records(t, KindMeta)
			if der, err := p.CurrentFor(ctx, tc.sel); !errors.Is(err, ErrUnknownIssuer) || der != nil {
				t.Fatalf("CurrentFor(%q) = %d bytes, %v; want ErrUnknownIssuer", tc.sel, len(der), err)
			}
			if got := e.records(t, KindMeta); !maps.Equal(got, meta) {
				t.Error("meta changed")
			}
		})
	}

	t.Run("fail/retired", func(t *testing.T) {
		if _, err := e.ca.Retire(first.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := p.CurrentFor(ctx, first.ID); !errors.Is(err, ErrUnknownIssuer) {
			t.Fatalf("CurrentFor(retired) = %v, want ErrUnknownIssuer", err)
		}
		if _, err := p.Regenerate(ctx); err != nil {
			t.Fatal(err)
		}
		meta := e.records(t, KindMeta)
		if want := map[string]string{"number": "2", "number/" + second.ID: "2"}; !maps.Equal(meta, want) {
			t.Errorf("meta %v, want %v: a retired intermediate takes no number", meta, want)
		}
	})
}

// TestRunPicksUpNewIssuer: after a rollover, a trigger makes Run build the
// new intermediate's CRL.
func TestRunPicksUpNewIssuer(t *testing.T) {
	e := newEnv(t)
	p := e.publisher(t, WithValidity(24*time.Hour))
	regens := make(chan error, 8)
	p.regenerated = func(_ *big.Int, err error) { regens <- err }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if err := <-regens; err != nil {
		t.Fatal(err)
	}
	is, err := e.ca.Rollover(pki.RolloverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.due() != 0 {
		t.Fatal("a new intermediate without a CRL must make the CRLs due")
	}
	p.Trigger()
	if err := <-regens; err != nil {
		t.Fatal(err)
	}
	if _, ok := p.fresh(is.ID); !ok {
		t.Fatal("no CRL for the new intermediate after the trigger")
	}
}
