package manifest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

func TestPAE(t *testing.T) {
	// The example of the DSSE protocol description.
	got := PAE("http://example.com/HelloWorld", []byte("hello world"))
	want := "DSSEv1 29 http://example.com/HelloWorld 11 hello world"
	if string(got) != want {
		t.Fatalf("PAE = %q, want %q", got, want)
	}
	if got := PAE("", nil); string(got) != "DSSEv1 0  0 " {
		t.Fatalf("empty PAE = %q", got)
	}
}

func TestSignOpenRoundTrip(t *testing.T) {
	a, _ := testKeys(t)
	m := testManifest(3)
	env, err := Sign(m, a)
	if err != nil {
		t.Fatal(err)
	}
	e := decodeEnvelope(t, env)
	if e.PayloadType != PayloadType || len(e.Signatures) != 1 || e.Signatures[0].KeyID != a.Public().KeyID() {
		t.Fatalf("envelope %+v", e)
	}
	// The payload uses the documented field names.
	var fields map[string]any
	if err := json.Unmarshal(e.Payload, &fields); err != nil {
		t.Fatal(err)
	}
	dev := fields["devices"].([]any)[0].(map[string]any)
	for _, k := range []string{"serial", "idevid_key_sha256", "model", "hardware_rev", "firmware_version",
		"firmware_sha256", "sbom_ref", "sbom_sha256", "manufactured_at", "site", "owner"} {
		if _, ok := dev[k]; !ok {
			t.Errorf("payload device has no %q", k)
		}
	}
	if fields["issued_at"] != "2026-11-22T10:00:00Z" {
		t.Errorf("issued_at = %v", fields["issued_at"])
	}
	// The signature is a hybrid signature over the PAE.
	if err := a.Public().Verify(PAE(PayloadType, e.Payload), e.Signatures[0].Sig); err != nil {
		t.Fatalf("signature over PAE: %v", err)
	}

	v, err := Verify(env, lookupOf(a.Public()))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v.Manifest, m) {
		t.Fatalf("opened %+v\nwant %+v", v.Manifest, m)
	}
	if len(v.KeyIDs) != 1 || v.KeyIDs[0] != a.Public().KeyID() || !isSHA256Hex(v.PayloadSHA256) {
		t.Fatalf("Verified = %+v", v)
	}
}

func TestSignRefusesInvalid(t *testing.T) {
	a, _ := testKeys(t)
	m := testManifest(2)
	m.Devices[1].Serial = m.Devices[0].Serial
	env, err := Sign(m, a)
	if !errors.Is(err, ErrDuplicate) || env != nil {
		t.Fatalf("Sign = %d bytes, %v; want nothing, ErrDuplicate", len(env), err)
	}
}

// withSignatures re-encodes env with other signatures.
func withSignatures(t *testing.T, env []byte, sigs ...Signature) []byte {
	t.Helper()
	e := decodeEnvelope(t, env)
	e.Signatures = sigs
	return mustJSON(t, e)
}

func TestOpen(t *testing.T) {
	a, b := testKeys(t)
	trusted := lookupOf(a.Public())
	good, err := Sign(testManifest(3), a)
	if err != nil {
		t.Fatal(err)
	}
	ge := decodeEnvelope(t, good)
	pae := PAE(PayloadType, ge.Payload)
	goodSig := ge.Signatures[0].Sig
	otherSig, err := a.Sign(rand.Reader, []byte("another message"))
	if err != nil {
		t.Fatal(err)
	}
	n := hybridsig.MLDSASignatureSize
	splice := func(ml, ec []byte) []byte { return append(bytes.Clone(ml[:n]), ec[n:]...) }
	idA := a.Public().KeyID()
	bySig := func(sig []byte) []byte { return withSignatures(t, good, Signature{KeyID: idA, Sig: sig}) }
	sigB, err := b.Sign(rand.Reader, pae)
	if err != nil {
		t.Fatal(err)
	}

	dupSerial := testManifest(3)
	dupSerial.Devices[2].Serial = dupSerial.Devices[0].Serial
	dupKey := testManifest(3)
	dupKey.Devices[2].IDevIDKeySHA256 = dupKey.Devices[1].IDevIDKeySHA256
	rev0 := testManifest(1)
	rev0.Revision = 0
	unknownField := strings.Replace(string(mustJSON(t, testManifest(1))), `"serial"`, `"colour":"red","serial"`, 1)
	otherType := signRaw(t, "application/vnd.embark.voucher.v1+json", ge.Payload, a)
	retyped := bytes.Replace(otherType, []byte("vnd.embark.voucher.v1"), []byte("vnd.embark.manifest.v1"), 1)
	tampered := decodeEnvelope(t, good)
	tampered.Payload = bytes.Replace(tampered.Payload, []byte("ACME-000002"), []byte("ACME-000009"), 1)

	tests := []struct {
		name  string
		env   []byte
		keys  KeyLookup
		opts  []OpenOption
		want  []error
		never []error
	}{
		{name: "ok/signed", env: good, keys: trusted},
		{name: "ok/extra signature by an unknown key is ignored", keys: trusted,
			env: withSignatures(t, good, Signature{KeyID: b.Public().KeyID(), Sig: sigB}, ge.Signatures[0])},
		{name: "ok/two trusted signers", keys: lookupOf(a.Public(), b.Public()),
			env: withSignatures(t, good, ge.Signatures[0], Signature{KeyID: b.Public().KeyID(), Sig: sigB})},
		{name: "fail/bad ECDSA half", keys: trusted, env: bySig(splice(goodSig, otherSig)),
			want: []error{ErrSignature, hybridsig.ErrECDSA}, never: []error{hybridsig.ErrMLDSA}},
		{name: "fail/bad ML-DSA half", keys: trusted, env: bySig(splice(otherSig, goodSig)),
			want: []error{ErrSignature, hybridsig.ErrMLDSA}, never: []error{hybridsig.ErrECDSA}},
		{name: "fail/both halves bad", keys: trusted, env: bySig(otherSig),
			want: []error{ErrSignature, hybridsig.ErrMLDSA, hybridsig.ErrECDSA}},
		{name: "fail/truncated signature", keys: trusted, env: bySig(goodSig[:len(goodSig)-3]),
			want: []error{ErrSignature, hybridsig.ErrMalformed}},
		{name: "fail/payload changed after signing", keys: trusted, env: mustJSON(t, tampered),
			want: []error{ErrSignature, hybridsig.ErrMLDSA, hybridsig.ErrECDSA}},
		{name: "fail/unknown signer", keys: lookupOf(b.Public()), env: good, want: []error{ErrUnknownSigner}},
		{name: "fail/no trusted keys", keys: nil, env: good, want: []error{ErrUnknownSigner}},
		{name: "fail/signature by another key under the trusted key id", keys: trusted,
			env: withSignatures(t, good, Signature{KeyID: idA, Sig: sigB}), want: []error{ErrSignature}},
		{name: "fail/one of two trusted signatures bad", keys: lookupOf(a.Public(), b.Public()),
			env:  withSignatures(t, good, ge.Signatures[0], Signature{KeyID: b.Public().KeyID(), Sig: goodSig}),
			want: []error{ErrSignature}},
		{name: "fail/lookup returns another key", env: good,
			keys: func(string) (*hybridsig.PublicKey, bool) { return b.Public(), true }, want: []error{ErrUnknownSigner}},
		{name: "fail/duplicate serials with different keys", keys: trusted,
			env: signRaw(t, PayloadType, mustJSON(t, dupSerial), a), want: []error{ErrDuplicate}},
		{name: "fail/one key for two serials", keys: trusted,
			env: signRaw(t, PayloadType, mustJSON(t, dupKey), a), want: []error{ErrDuplicate}},
		{name: "fail/invalid manifest", keys: trusted,
			env: signRaw(t, PayloadType, mustJSON(t, rev0), a), want: []error{ErrInvalid}},
		{name: "fail/malformed envelope JSON", keys: trusted, env: good[:len(good)-1], want: []error{ErrMalformed}},
		{name: "fail/not JSON", keys: trusted, env: []byte("DSSEv1"), want: []error{ErrMalformed}},
		{name: "fail/empty", keys: trusted, env: nil, want: []error{ErrMalformed}},
		{name: "fail/unknown field in envelope", keys: trusted,
			env: append(bytes.TrimSuffix(bytes.Clone(good), []byte("}")), `,"extra":1}`...), want: []error{ErrMalformed}},
		{name: "fail/trailing data after envelope", keys: trusted, env: append(bytes.Clone(good), " {}"...),
			want: []error{ErrMalformed}},
		{name: "fail/bad base64 payload", keys: trusted,
			env: []byte(`{"payloadType":"` + PayloadType + `","payload":"!!!","signatures":[]}`), want: []error{ErrMalformed}},
		{name: "fail/no signatures", keys: trusted, env: withSignatures(t, good), want: []error{ErrMalformed}},
		{name: "fail/same key signs twice", keys: trusted, env: withSignatures(t, good, ge.Signatures[0], ge.Signatures[0]),
			want: []error{ErrMalformed}},
		{name: "fail/too many signatures", keys: trusted,
			env: withSignatures(t, good, make([]Signature, MaxSignatures+1)...), want: []error{ErrMalformed}},
		{name: "fail/malformed payload JSON", keys: trusted,
			env: signRaw(t, PayloadType, []byte(`{"manufacturer":"acme",`), a), want: []error{ErrMalformed}},
		{name: "fail/trailing data after payload", keys: trusted,
			env: signRaw(t, PayloadType, append(bytes.Clone(ge.Payload), "[]"...), a), want: []error{ErrMalformed}},
		{name: "fail/unknown field in payload", keys: trusted,
			env: signRaw(t, PayloadType, []byte(unknownField), a), want: []error{ErrMalformed}},
		{name: "fail/wrong payload type", keys: trusted, env: otherType, want: []error{ErrPayloadType}},
		{name: "fail/payload type changed after signing", keys: trusted, env: retyped,
			want: []error{ErrSignature, hybridsig.ErrMLDSA, hybridsig.ErrECDSA}},
		{name: "fail/oversized", keys: trusted, env: good, opts: []OpenOption{WithMaxSize(len(good) - 1)},
			want: []error{ErrTooLarge}},
		{name: "fail/oversized by default", keys: trusted,
			env: append(bytes.Clone(good), bytes.Repeat([]byte(" "), DefaultMaxSize+1-len(good))...), want: []error{ErrTooLarge}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := bytes.Clone(tt.env)
			m, err := Open(tt.env, tt.keys, tt.opts...)
			if !bytes.Equal(before, tt.env) {
				t.Fatal("Open changed its input")
			}
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if m == nil || len(m.Devices) != 3 {
					t.Fatalf("Open returned %+v", m)
				}
				return
			}
			if m != nil {
				t.Fatalf("Open returned a manifest with error %v", err)
			}
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want it to match %v", err, w)
				}
			}
			for _, n := range tt.never {
				if errors.Is(err, n) {
					t.Errorf("err = %v, must not match %v", err, n)
				}
			}
		})
	}
}

func TestWithMaxSize(t *testing.T) {
	a, _ := testKeys(t)
	good, err := Sign(testManifest(1), a)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{0, -1} {
		if m, err := Open(good, lookupOf(a.Public()), WithMaxSize(n)); err == nil || m != nil {
			t.Errorf("WithMaxSize(%d) accepted", n)
		}
	}
	if _, err := Open(good, lookupOf(a.Public()), WithMaxSize(len(good))); err != nil {
		t.Errorf("envelope of exactly the maximum size: %v", err)
	}
}

func TestEnvelopeBase64IsStandard(t *testing.T) {
	a, _ := testKeys(t)
	env := signRaw(t, PayloadType, []byte{0xfb, 0xff, 0xfe}, a)
	var raw map[string]any
	if err := json.Unmarshal(env, &raw); err != nil {
		t.Fatal(err)
	}
	if got := raw["payload"]; got != base64.StdEncoding.EncodeToString([]byte{0xfb, 0xff, 0xfe}) {
		t.Fatalf("payload encoded as %v", got)
	}
}
