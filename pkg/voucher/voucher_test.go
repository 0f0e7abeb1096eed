package voucher

import (
	"bytes"
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
)

// alter decodes a COSE_Sign1, lets edit change it and re-encodes it with
// the original signature.
func alter(t *testing.T, b []byte, edit func(m *cose.Sign1Message)) []byte {
	t.Helper()
	var m cose.Sign1Message
	if err := m.UnmarshalCBOR(b); err != nil {
		t.Fatal(err)
	}
	edit(&m)
	out, err := m.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// rewritePayload re-encodes a voucher payload with one field changed.
func rewritePayload(t *testing.T, payload []byte, edit func(w *wireVoucher)) []byte {
	t.Helper()
	var w wireVoucher
	if err := cbor.Unmarshal(payload, &w); err != nil {
		t.Fatal(err)
	}
	edit(&w)
	out, err := encMode.Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerify(t *testing.T) {
	p := newTestPKI(t)
	s := p.signer(t)
	other := newTestPKI(t) // another manufacturer
	clock := func() time.Time { return p.now.Add(time.Minute) }

	sign := func(v Voucher) []byte {
		t.Helper()
		b, err := s.Sign(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := sign(p.voucher())
	nonceless := p.voucher()
	nonceless.Nonce, nonceless.ExpiresOn = nil, p.now.Add(24*time.Hour)
	noncelessB := sign(nonceless)
	future := p.voucher()
	future.CreatedOn = p.now.Add(time.Hour)
	wrongSerial := p.voucher()
	wrongSerial.SerialNumber = "ACME-000002"
	otherMfr, err := other.signer(t).Sign(p.voucher())
	if err != nil {
		t.Fatal(err)
	}
	// Another manufacturer naming our anchor's kid.
	otherSigner, err := es256(other.anchorKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	pv := p.voucher()
	impostor, err := sign1(otherSigner, TypeVoucher, KeyID(p.anchor), nil, pv.wire(), MaxVoucher)
	if err != nil {
		t.Fatal(err)
	}
	altered := alter(t, good, func(m *cose.Sign1Message) {
		m.Payload = rewritePayload(t, m.Payload, func(w *wireVoucher) { w.PinnedDomainCert = other.domainRoot.Raw })
	})
	unknownField, err := sign1(s.cs, TypeVoucher, s.kid, nil, map[int]any{1: 0, 2: "ACME-000001", 3: p.nonce(),
		4: p.domainRoot.Raw, 5: uint64(p.now.Unix()), 9: "extra"}, MaxVoucher)
	if err != nil {
		t.Fatal(err)
	}
	wrongType := p.pledgeRequest(t)

	base := VerifyOptions{Anchors: []*x509.Certificate{p.anchor}, Serial: "ACME-000001", Nonce: p.nonce()}
	with := func(edit func(o *VerifyOptions)) VerifyOptions {
		o := base
		edit(&o)
		return o
	}
	tests := []struct {
		name string
		b    []byte
		o    VerifyOptions
		want error
	}{
		{"ok/nonced-no-clock", good, base, nil},
		{"ok/nonced-with-clock", good, with(func(o *VerifyOptions) { o.Now = clock }), nil},
		{"ok/nonceless-with-clock", noncelessB, with(func(o *VerifyOptions) { o.Now, o.AllowNonceless = clock, true }), nil},
		{"fail/wrong-nonce", good, with(func(o *VerifyOptions) { o.Nonce = []byte("another-nonce-16") }), ErrWrongNonce},
		{"fail/no-nonce-sent", good, with(func(o *VerifyOptions) { o.Nonce = nil }), ErrWrongNonce},
		{"fail/wrong-serial", sign(wrongSerial), base, ErrWrongSerial},
		{"fail/expired", noncelessB, with(func(o *VerifyOptions) {
			o.Now, o.AllowNonceless = func() time.Time { return p.now.Add(25 * time.Hour) }, true
		}), ErrExpired},
		{"fail/not-yet-valid", sign(future), with(func(o *VerifyOptions) { o.Now = clock }), ErrNotYetValid},
		{"fail/anchor-expired", good, with(func(o *VerifyOptions) { o.Now = func() time.Time { return p.now.AddDate(2, 0, 0) } }), ErrExpired},
		{"fail/nonceless-without-clock", noncelessB, with(func(o *VerifyOptions) { o.AllowNonceless = true }), ErrNonceless},
		{"fail/nonceless-not-allowed", noncelessB, with(func(o *VerifyOptions) { o.Now = clock }), ErrNonceless},
		{"fail/other-manufacturer", otherMfr, base, ErrUnknownSigner},
		{"fail/other-manufacturer-naming-our-kid", impostor, base, ErrBadSignature},
		{"fail/altered-after-signing", altered, base, ErrBadSignature},
		{"fail/unknown-field", unknownField, base, ErrMalformed},
		{"fail/a-request-is-no-voucher", wrongType, base, ErrMalformed},
		{"fail/truncated", good[:len(good)-10], base, ErrMalformed},
		{"fail/empty", nil, base, ErrMalformed},
		{"fail/too-large", make([]byte, MaxVoucher+1), base, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Verify(tt.b, tt.o)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify = %v, want %v", err, tt.want)
			}
			if tt.want != nil {
				if v != nil {
					t.Fatal("a refused voucher was returned")
				}
				return
			}
			if v.SerialNumber != "ACME-000001" || !bytes.Equal(v.PinnedDomainCert, p.domainRoot.Raw) {
				t.Fatalf("voucher %+v", v)
			}
			if _, err := v.Pinned(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestWireKeys pins the documented integer keys of a voucher's payload and
// the protected header, read without this package's decoder.
func TestWireKeys(t *testing.T) {
	p := newTestPKI(t)
	v := p.voucher()
	v.Nonce, v.ExpiresOn, v.IDevIDIssuer = nil, p.now.Add(time.Hour), []byte{1, 2, 3}
	b, err := p.signer(t).Sign(v)
	if err != nil {
		t.Fatal(err)
	}
	var tag cbor.RawTag
	if err := cbor.Unmarshal(b, &tag); err != nil || tag.Number != 18 {
		t.Fatalf("not a COSE_Sign1 tag: %v %d", err, tag.Number)
	}
	var parts []cbor.RawMessage
	if err := cbor.Unmarshal(tag.Content, &parts); err != nil || len(parts) != 4 {
		t.Fatalf("not a 4-array: %v", err)
	}
	var protected, payload []byte
	_ = cbor.Unmarshal(parts[0], &protected)
	_ = cbor.Unmarshal(parts[2], &payload)
	var hdr map[int]any
	if err := cbor.Unmarshal(protected, &hdr); err != nil {
		t.Fatal(err)
	}
	if hdr[1] != int64(-7) || hdr[3] != TypeVoucher || !bytes.Equal(hdr[4].([]byte), KeyID(p.anchor)) {
		t.Fatalf("protected header %v", hdr)
	}
	if _, ok := hdr[33]; ok {
		t.Fatal("a voucher carries no x5chain")
	}
	var m map[int]any
	if err := cbor.Unmarshal(payload, &m); err != nil {
		t.Fatal(err)
	}
	want := map[int]any{1: uint64(0), 2: "ACME-000001", 4: p.domainRoot.Raw, 5: uint64(p.now.Unix()),
		6: uint64(p.now.Add(time.Hour).Unix()), 7: []byte{1, 2, 3}}
	if len(m) != len(want) {
		t.Fatalf("payload keys %v", m)
	}
	for k, w := range want {
		got := m[k]
		if gb, ok := got.([]byte); ok {
			if !bytes.Equal(gb, w.([]byte)) {
				t.Errorf("key %d = %x", k, gb)
			}
		} else if got != w {
			t.Errorf("key %d = %v (%T), want %v", k, got, got, w)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	p := newTestPKI(t)
	s := p.signer(t)
	tests := []struct {
		name string
		edit func(v *Voucher)
	}{
		{"fail/no-serial", func(v *Voucher) { v.SerialNumber = "" }},
		{"fail/short-nonce", func(v *Voucher) { v.Nonce = []byte("short") }},
		{"fail/nonceless-without-expiry", func(v *Voucher) { v.Nonce = nil }},
		{"fail/no-pinned", func(v *Voucher) { v.PinnedDomainCert = nil }},
		{"fail/expires-before-created", func(v *Voucher) { v.ExpiresOn = p.now.Add(-time.Second) }},
		{"fail/assertion", func(v *Voucher) { v.Assertion = 7 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := p.voucher()
			tt.edit(&v)
			if b, err := s.Sign(v); !errors.Is(err, ErrMalformed) || b != nil {
				t.Fatalf("Sign = %d bytes, %v", len(b), err)
			}
		})
	}
	if _, err := NewSigner(p.anchorKey, p.domainRoot); !errors.Is(err, ErrUnsupportedKey) {
		t.Fatalf("key of another certificate: %v", err)
	}
}

func TestVerifyServerChain(t *testing.T) {
	p := newTestPKI(t)
	other := newTestPKI(t)
	tests := []struct {
		name   string
		pinned *x509.Certificate
		chain  []*x509.Certificate
		want   error
	}{
		{"ok/ca", p.domainRoot, []*x509.Certificate{p.server, p.domainInter}, nil},
		{"ok/end-entity-pinned", p.server, []*x509.Certificate{p.server}, nil},
		{"fail/other-domain", other.domainRoot, []*x509.Certificate{p.server, p.domainInter}, ErrNotPinned},
		{"fail/missing-intermediate", p.domainRoot, []*x509.Certificate{p.server}, ErrNotPinned},
		{"fail/not-a-server-certificate", p.domainRoot, []*x509.Certificate{p.registrar, p.domainInter}, ErrNotPinned},
		{"fail/other-end-entity", p.server, []*x509.Certificate{other.server}, ErrNotPinned},
		{"fail/no-chain", p.domainRoot, nil, ErrNotPinned},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := VerifyServerChain(tt.pinned, tt.chain, p.now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err == nil && !got[len(got)-1].Equal(tt.pinned) {
				t.Fatal("verified chain does not end at the pinned certificate")
			}
		})
	}
}
