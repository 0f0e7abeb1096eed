package manifest

import (
	"errors"
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
