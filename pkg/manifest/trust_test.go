package manifest

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

func TestTrustBundle(t *testing.T) {
	a, b := testKeys(t)
	root, rootKey := testCA(t, "acme root", nil, nil, true)
	inter, interKey := testCA(t, "acme IDevID CA", root, rootKey, true)
	inter2, _ := testCA(t, "acme IDevID CA 2", inter, interKey, true)
	otherRoot, otherKey := testCA(t, "other root", nil, nil, true)
	stray, _ := testCA(t, "stray intermediate", otherRoot, otherKey, true)
	leaf, _ := testCA(t, "not a CA", nil, nil, false)

	tb, err := NewTrustBundle("acme", []*x509.Certificate{root}, []*x509.Certificate{inter}, []*hybridsig.PublicKey{a.Public()})
	if err != nil {
		t.Fatal(err)
	}
	good, err := tb.Marshal()
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ok/round trip", func(t *testing.T) {
		tr, err := ParseTrustBundle(good)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Name != "acme" || len(tr.Roots) != 1 || !tr.Roots[0].Equal(root) ||
			len(tr.Intermediates) != 1 || !tr.Intermediates[0].Equal(inter) ||
			len(tr.ManifestKeys) != 1 || !tr.ManifestKeys[0].Equal(a.Public()) {
			t.Fatalf("parsed %+v", tr)
		}
		if k, ok := tr.Lookup(a.Public().KeyID()); !ok || !k.Equal(a.Public()) {
			t.Fatal("Lookup does not find the manifest key")
		}
		if _, ok := tr.Lookup(b.Public().KeyID()); ok {
			t.Fatal("Lookup finds a key not in the bundle")
		}
	})

	edit := func(f func(tb *TrustBundle)) []byte {
		c := *tb
		c.Roots = append([]string(nil), tb.Roots...)
		c.Intermediates = append([]string(nil), tb.Intermediates...)
		c.ManifestKeys = append([]string(nil), tb.ManifestKeys...)
		f(&c)
		return mustJSON(t, c)
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"ok/two-level intermediates", edit(func(tb *TrustBundle) { tb.Intermediates = []string{certPEM(inter2), certPEM(inter)} }), nil},
		{"ok/no intermediates", edit(func(tb *TrustBundle) { tb.Intermediates = nil }), nil},
		{"ok/two keys", edit(func(tb *TrustBundle) {
			tb.ManifestKeys = append(tb.ManifestKeys, string(hybridsig.MarshalPublicKeyPEM(b.Public())))
		}), nil},
		{"fail/bad name", edit(func(tb *TrustBundle) { tb.Name = "ACME" }), ErrInvalid},
		{"fail/no roots", edit(func(tb *TrustBundle) { tb.Roots = nil }), ErrInvalid},
		{"fail/root not a CA", edit(func(tb *TrustBundle) { tb.Roots = []string{certPEM(leaf)} }), ErrInvalid},
		{"fail/intermediate not a CA", edit(func(tb *TrustBundle) { tb.Intermediates = []string{certPEM(leaf)} }), ErrInvalid},
		{"fail/intermediate of another root", edit(func(tb *TrustBundle) { tb.Intermediates = []string{certPEM(stray)} }), ErrInvalid},
		{"fail/no manifest keys", edit(func(tb *TrustBundle) { tb.ManifestKeys = nil }), ErrInvalid},
		{"fail/same key twice", edit(func(tb *TrustBundle) { tb.ManifestKeys = append(tb.ManifestKeys, tb.ManifestKeys[0]) }), ErrDuplicate},
		{"fail/root not PEM", edit(func(tb *TrustBundle) { tb.Roots = []string{"MIIB"} }), ErrMalformed},
		{"fail/two certificates in one string", edit(func(tb *TrustBundle) { tb.Roots = []string{certPEM(root) + certPEM(root)} }), ErrMalformed},
		{"fail/manifest key of wrong PEM type", edit(func(tb *TrustBundle) { tb.ManifestKeys = []string{certPEM(root)} }), ErrMalformed},
		{"fail/unknown field", bytes.Replace(good, []byte(`"name"`), []byte(`"colour": "red", "name"`), 1), ErrMalformed},
		{"fail/not JSON", []byte("name: acme"), ErrMalformed},
		{"fail/oversized", append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxTrustBundleSize)...), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := ParseTrustBundle(tt.b)
			if tt.want == nil {
				if err != nil || tr == nil {
					t.Fatalf("ParseTrustBundle: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) || tr != nil {
				t.Fatalf("ParseTrustBundle = %v, %v; want nil, %v", tr, err, tt.want)
			}
		})
	}

	t.Run("fail/NewTrustBundle checks", func(t *testing.T) {
		tb, err := NewTrustBundle("acme", []*x509.Certificate{leaf}, nil, []*hybridsig.PublicKey{a.Public()})
		if !errors.Is(err, ErrInvalid) || tb != nil {
			t.Fatalf("NewTrustBundle = %v, %v; want nil, ErrInvalid", tb, err)
		}
	})
}

func TestTrustOpen(t *testing.T) {
	a, b := testKeys(t)
	root, _ := testCA(t, "acme root", nil, nil, true)
	tb, err := NewTrustBundle("acme", []*x509.Certificate{root}, nil, []*hybridsig.PublicKey{a.Public()})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := tb.Parse()
	if err != nil {
		t.Fatal(err)
	}
	m := testManifest(2)
	good, err := Sign(m, a)
	if err != nil {
		t.Fatal(err)
	}
	other := testManifest(2)
	other.Manufacturer = "globex"
	wrongMaker, err := Sign(other, a)
	if err != nil {
		t.Fatal(err)
	}
	byB, err := Sign(m, b)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  []byte
		want error
	}{
		{"ok/own manifest", good, nil},
		{"fail/manifest names another manufacturer", wrongMaker, ErrWrongManufacturer},
		{"fail/signed by a key outside the bundle", byB, ErrUnknownSigner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tr.Open(tt.env)
			if tt.want == nil {
				if err != nil || !reflect.DeepEqual(got, m) {
					t.Fatalf("Open = %+v, %v", got, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("Open = %v, %v; want nil, %v", got, err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "manifest: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}
