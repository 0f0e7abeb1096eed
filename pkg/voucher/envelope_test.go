package voucher

import (
	"errors"
	"testing"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

func TestCountersigned(t *testing.T) {
	p := newTestPKI(t)
	key, err := hybridsig.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := hybridsig.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.signer(t).Sign(p.voucher())
	if err != nil {
		t.Fatal(err)
	}
	cs, err := Countersign(key, v)
	if err != nil {
		t.Fatal(err)
	}
	keys := func(id string) (*hybridsig.PublicKey, bool) { return key.Public(), id == key.Public().KeyID() }
	got, id, err := OpenCountersigned(cs, keys)
	if err != nil || string(got) != string(v) || id != key.Public().KeyID() {
		t.Fatalf("open: %v", err)
	}
	byOther, _ := Countersign(otherKey, v)
	altered := append([]byte(nil), cs...)
	altered[20] ^= 1 // inside the voucher bytes
	reg, _ := SignRegistration(key, Registration{Owner: "op", OwnerKey: key.Public(), DomainCA: p.domainRoot, CreatedOn: p.now})
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"fail/other-key", byOther, ErrUnknownSigner},
		{"fail/altered", altered, ErrBadSignature},
		{"fail/registration-is-no-countersignature", reg, ErrBadSignature},
		{"fail/garbage", []byte{0x83, 0x01}, ErrMalformed},
		{"fail/too-large", make([]byte, MaxEnvelope+1), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, _, err := OpenCountersigned(tt.b, keys); !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("OpenCountersigned = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestRegistration(t *testing.T) {
	p := newTestPKI(t)
	key, _ := hybridsig.GenerateKey(nil)
	thief, _ := hybridsig.GenerateKey(nil)
	r := Registration{Owner: "example-operator", OwnerKey: key.Public(), DomainCA: p.domainRoot, CreatedOn: p.now}
	b, err := SignRegistration(key, r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenRegistration(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Owner != r.Owner || !got.OwnerKey.Equal(key.Public()) || !got.DomainCA.Equal(p.domainRoot) || !got.CreatedOn.Equal(p.now) {
		t.Fatalf("opened %+v", got)
	}
	if _, err := SignRegistration(thief, r); !errors.Is(err, ErrMalformed) {
		t.Fatalf("signing another's registration: %v", err)
	}
	// A thief re-signs the owner's registration body with its own key.
	e, _ := openEnvelope(b)
	stolen, _ := sealEnvelope(thief, contextRegistration, e.Body)
	e.Body[len(e.Body)-1] ^= 1
	altered, _ := encMode.Marshal(e)
	counter, _ := Countersign(key, b[:100])
	notCA := r
	notCA.DomainCA = p.server
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"fail/signed-by-another-key", stolen, ErrBadSignature},
		{"fail/altered", altered, ErrBadSignature},
		{"fail/countersignature-is-no-registration", counter, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := OpenRegistration(tt.b); !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("OpenRegistration = %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := SignRegistration(key, notCA); !errors.Is(err, ErrMalformed) {
		t.Fatalf("end-entity domain certificate: %v", err)
	}
}

func TestStatus(t *testing.T) {
	b, err := MarshalStatus(Status{OK: false, Reason: "wrong nonce"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseStatus(b)
	if err != nil || s.Version != 1 || s.OK || s.Reason != "wrong nonce" {
		t.Fatalf("status %+v, %v", s, err)
	}
	for name, in := range map[string][]byte{
		"fail/version-2":    mustCBOR(t, map[int]any{1: 2, 2: true}),
		"fail/unknown-key":  mustCBOR(t, map[int]any{1: 1, 2: true, 9: 1}),
		"fail/not-a-map":    {0x01},
		"fail/too-large":    make([]byte, MaxStatus+1),
		"fail/text-as-bool": mustCBOR(t, map[int]any{1: 1, 2: "yes"}),
	} {
		if _, err := ParseStatus(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func mustCBOR(t *testing.T, v any) []byte {
	t.Helper()
	b, err := encMode.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
