package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

func mustKey(t testing.TB) *hybridsig.PrivateKey {
	t.Helper()
	k, err := hybridsig.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustCheckpoint(t testing.TB, k *hybridsig.PrivateKey, e Entry) SignedCheckpoint {
	t.Helper()
	sc, err := SignCheckpoint(k, e, time.Unix(1_800_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// splice returns a signature made of the ML-DSA-65 half of ml and the ECDSA
// half of ec.
func splice(ml, ec []byte) []byte {
	out := bytes.Clone(ml[:hybridsig.MLDSASignatureSize])
	return append(out, ec[hybridsig.MLDSASignatureSize:]...)
}

// TestCheckpointEncoding pins the signed bytes: the documented CBOR map.
func TestCheckpointEncoding(t *testing.T) {
	hash := bytes.Repeat([]byte{0xab}, 32)
	id := hex.EncodeToString(bytes.Repeat([]byte{0x01}, 32))
	c := Checkpoint{Seq: 1000, Hash: hash, Time: time.Unix(1_800_000_000, 0), KeyID: id}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := "a4" + "01" + "1903e8" + "02" + "5820" + hex.EncodeToString(hash) + "03" + "1a6b49d200" +
		"04" + "7840" + hex.EncodeToString([]byte(id))
	if got := hex.EncodeToString(b); got != want {
		t.Fatalf("encoding\n got %s\nwant %s", got, want)
	}
	back, err := ParseCheckpoint(b)
	if err != nil {
		t.Fatal(err)
	}
	if back.Seq != c.Seq || !bytes.Equal(back.Hash, hash) || !back.Time.Equal(c.Time) || back.KeyID != id {
		t.Fatalf("round trip: %+v", back)
	}

	nonCanonical, _ := cbor.Marshal(map[int]any{4: id, 3: 1_800_000_000, 2: hash, 1: uint64(1000)}) // unsorted keys
	long := append([]byte{0xa4, 0x01, 0x1b, 0, 0, 0, 0, 0, 0, 0x03, 0xe8}, b[5:]...)                // 1000 as 8 bytes
	extra, _ := cbor.Marshal(map[int]any{1: uint64(1000), 2: hash, 3: 1_800_000_000, 4: id, 5: "x"})
	upper, _ := cbor.Marshal(map[int]any{1: uint64(1000), 2: hash, 3: 1_800_000_000, 4: hex.EncodeToString(bytes.Repeat([]byte{0xab}, 32))[:62] + "AB"})
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"fail/unsorted keys", nonCanonical, "not canonically encoded"},
		{"fail/non-shortest integer", long, "not canonically encoded"},
		{"fail/unknown field", extra, "unknown field"},
		{"fail/upper-case key id", upper, "key id"},
		{"fail/short hash", bytes.Replace(b, append([]byte{0x58, 0x20}, hash...), append([]byte{0x58, 0x1f}, hash[:31]...), 1),
			"hash of 31 bytes"},
		{"fail/trailing byte", append(bytes.Clone(b), 0), "extraneous data"},
		{"fail/empty", nil, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseCheckpoint(tt.in)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseCheckpoint = %v, want ErrMalformed: %s", err, tt.want)
			}
		})
	}
}

func TestCheckpointVerify(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	entries := chain(3)
	sc := mustCheckpoint(t, k, entries[1])
	sc3 := mustCheckpoint(t, k, entries[2])
	byOther := mustCheckpoint(t, other, entries[1])
	keys := []*hybridsig.PublicKey{k.Public()}
	tests := []struct {
		name    string
		sc      SignedCheckpoint
		keys    []*hybridsig.PublicKey
		wantIs  []error
		wantNot []error
	}{
		{name: "ok/genuine", sc: sc, keys: keys},
		{name: "ok/among several keys", sc: sc, keys: []*hybridsig.PublicKey{other.Public(), k.Public()}},
		{name: "fail/only the ECDSA half valid", sc: SignedCheckpoint{Body: sc.Body, Signature: splice(sc3.Signature, sc.Signature)},
			keys: keys, wantIs: []error{ErrSignature, hybridsig.ErrMLDSA}, wantNot: []error{hybridsig.ErrECDSA}},
		{name: "fail/only the ML-DSA half valid", sc: SignedCheckpoint{Body: sc.Body, Signature: splice(sc.Signature, sc3.Signature)},
			keys: keys, wantIs: []error{ErrSignature, hybridsig.ErrECDSA}, wantNot: []error{hybridsig.ErrMLDSA}},
		{name: "fail/signature moved to another checkpoint", sc: SignedCheckpoint{Body: sc3.Body, Signature: sc.Signature},
			keys: keys, wantIs: []error{ErrSignature, hybridsig.ErrECDSA, hybridsig.ErrMLDSA}},
		{name: "fail/unknown key", sc: byOther, keys: keys, wantIs: []error{ErrUnknownKey}, wantNot: []error{ErrSignature}},
		{name: "fail/no keys", sc: sc, wantIs: []error{ErrUnknownKey}},
		{name: "fail/key id of a trusted key, signed by another", keys: keys, wantIs: []error{ErrSignature},
			sc: func() SignedCheckpoint {
				body := bytes.Replace(byOther.Body, []byte(other.Public().KeyID()), []byte(k.Public().KeyID()), 1)
				return SignedCheckpoint{Body: body, Signature: byOther.Signature}
			}()},
		{name: "fail/truncated signature", sc: SignedCheckpoint{Body: sc.Body, Signature: sc.Signature[:100]}, keys: keys,
			wantIs: []error{ErrSignature, hybridsig.ErrMalformed}},
		{name: "fail/malformed body", sc: SignedCheckpoint{Body: sc.Body[1:], Signature: sc.Signature}, keys: keys,
			wantIs: []error{ErrMalformed}, wantNot: []error{ErrSignature}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.sc.Verify(tt.keys)
			if tt.wantIs == nil {
				if err != nil {
					t.Fatal(err)
				}
				if c.Seq != 2 || !bytes.Equal(c.Hash, entries[1].Hash) || c.KeyID != k.Public().KeyID() {
					t.Fatalf("checkpoint %+v", c)
				}
				return
			}
			for _, w := range tt.wantIs {
				if !errors.Is(err, w) {
					t.Errorf("err = %v, want %v", err, w)
				}
			}
			for _, w := range tt.wantNot {
				if errors.Is(err, w) {
					t.Errorf("err = %v, must not be %v", err, w)
				}
			}
		})
	}

	raw, err := sc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseSignedCheckpoint(raw)
	if err != nil || !bytes.Equal(back.Body, sc.Body) || !bytes.Equal(back.Signature, sc.Signature) {
		t.Fatalf("stored encoding round trip: %v", err)
	}
	if _, err := ParseSignedCheckpoint(raw[:len(raw)-1]); !errors.Is(err, ErrMalformed) {
		t.Fatalf("truncated record: %v", err)
	}
}

// TestCheckpointSignatureInput pins what the signature covers: the body
// under the context "embark audit checkpoint v1", as documented.
func TestCheckpointSignatureInput(t *testing.T) {
	if len(CheckpointContext) != 0x1a || CheckpointContext != "embark audit checkpoint v1" {
		t.Fatalf("context %q", CheckpointContext)
	}
	k := mustKey(t)
	sc := mustCheckpoint(t, k, chain(1)[0])
	if err := k.Public().VerifyContext(sc.Body, []byte("embark audit checkpoint v1"), sc.Signature); err != nil {
		t.Fatalf("ok/documented input: %v", err)
	}
	if err := k.Public().Verify(sc.Body, sc.Signature); !errors.Is(err, hybridsig.ErrMLDSA) || !errors.Is(err, hybridsig.ErrECDSA) {
		t.Fatalf("fail/without the context: %v", err)
	}
}
