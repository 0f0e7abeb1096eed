package manifest

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"testing"
)

// FuzzOpen feeds arbitrary envelopes to Open with a trusted key: it must
// never panic, accept only genuinely signed valid manifests and classify
// every refusal.
func FuzzOpen(f *testing.F) {
	a, _ := testKeys(f)
	good, err := Sign(testManifest(2), a)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add(signRaw(f, PayloadType, []byte(`{"manufacturer":"acme","revision":1}`), a))
	f.Add(signRaw(f, PayloadType, []byte(`null`), a))
	f.Add([]byte(`{"payloadType":"","payload":"","signatures":[{"keyid":"","sig":""}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[]`))
	trusted := lookupOf(a.Public())
	f.Fuzz(func(t *testing.T, env []byte) {
		m, err := Open(env, trusted, WithMaxSize(1<<20))
		if err != nil {
			if m != nil {
				t.Fatal("manifest returned with an error")
			}
			for _, s := range []error{ErrMalformed, ErrPayloadType, ErrUnknownSigner, ErrSignature, ErrInvalid, ErrDuplicate, ErrTooLarge} {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("unclassified error: %v", err)
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("opened an invalid manifest: %v", err)
		}
		// Anything accepted carries a payload that the trusted key signed.
		e := decodeEnvelope(t, env)
		for _, s := range e.Signatures {
			if s.KeyID == a.Public().KeyID() {
				if err := a.Public().Verify(PAE(PayloadType, e.Payload), s.Sig); err != nil {
					t.Fatalf("accepted an envelope whose signature does not verify: %v", err)
				}
				return
			}
		}
		t.Fatal("accepted an envelope without a trusted signature")
	})
}

func FuzzParseTrustBundle(f *testing.F) {
	f.Add([]byte(`{"name":"acme","roots":["-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n"],"manifest_keys":["x"]}`))
	f.Add([]byte(`{"name":"acme","roots":[],"manifest_keys":[]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tr, err := ParseTrustBundle(b)
		if err != nil {
			if tr != nil {
				t.Fatal("trust returned with an error")
			}
			return
		}
		if len(tr.Roots) == 0 || len(tr.ManifestKeys) == 0 || !ValidName(tr.Name) {
			t.Fatalf("accepted %+v", tr)
		}
	})
}

// FuzzVerifyReader checks the streaming reader against Verify on arbitrary
// envelopes: both accept with the same manifest, or both refuse with the
// same errors. The one allowed difference is a payload with two devices
// members, which only the stream refuses.
func FuzzVerifyReader(f *testing.F) {
	a, _ := testKeys(f)
	small, err := Sign(testManifest(2), a)
	if err != nil {
		f.Fatal(err)
	}
	large, err := Sign(testManifest(12), a) // its payload spills
	if err != nil {
		f.Fatal(err)
	}
	payload := mustJSON(f, testManifest(12))
	f.Add(small)
	f.Add(large)
	f.Add(large[:len(large)/2])
	f.Add(object("signatures", sigsJSON(f, PayloadType, payload, a), "payload", b64String(payload, 76, true),
		"payloadType", `"`+PayloadType+`"`))
	f.Add(signRaw(f, PayloadType, []byte(`{"manufacturer":"acme","revision":1}`), a))
	f.Add(signRaw(f, PayloadType, []byte(`null`), a))
	f.Add([]byte(`{"payloadType":"","payload":"","signatures":[{"keyid":"","sig":""}]}`))
	f.Add([]byte(`{}`))
	trusted := lookupOf(a.Public())
	f.Fuzz(func(t *testing.T, env []byte) {
		dir := t.TempDir()
		v, errOpen := Verify(env, trusted, WithMaxSize(1<<20))
		s, errStream := VerifyReader(bytes.NewReader(env), trusted, WithMaxSize(1<<20), WithTempDir(dir))
		switch {
		case errOpen == nil && errors.Is(errStream, errDuplicateMember):
		case errOpen == nil && errStream == nil:
			m, err := s.ReadAll()
			if err != nil {
				t.Fatalf("ReadAll: %v", err)
			}
			if !reflect.DeepEqual(m, v.Manifest) || s.PayloadSHA256() != v.PayloadSHA256 || !reflect.DeepEqual(s.KeyIDs(), v.KeyIDs) {
				t.Fatalf("stream read %+v\nOpen read %+v", m, v.Manifest)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		case errOpen != nil && errStream != nil:
			if got, want := sentinelsOf(errStream), sentinelsOf(errOpen); !reflect.DeepEqual(got, want) {
				t.Fatalf("stream refused with %v\nOpen refused with %v", errStream, errOpen)
			}
			var ve1, ve2 *ValidationError
			if errors.As(errOpen, &ve1) != errors.As(errStream, &ve2) || ve1 != nil && !reflect.DeepEqual(ve1, ve2) {
				t.Fatalf("validation errors differ: stream %#v, Open %#v", ve2, ve1)
			}
		default:
			t.Fatalf("Open: %v\nstream: %v", errOpen, errStream)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("temporary files left: %v", ents)
		}
	})
}
