package transfer

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/embark-iot/embark/pkg/manifest"
)

// TestWireFormat pins the field names and encodings of the payload.
func TestWireFormat(t *testing.T) {
	o := newOwners(t)
	env := mustSign(t, record(keyedSerial, 1, o.alpha, o.beta), o.alpha.Key)
	var e manifest.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	if e.PayloadType != "application/vnd.embark.transfer.v1+json" || len(e.Signatures) != 1 || e.Signatures[0].KeyID != o.alpha.KeyID() {
		t.Fatalf("envelope %s, %d signatures", e.PayloadType, len(e.Signatures))
	}
	var p map[string]any
	if err := json.Unmarshal(e.Payload, &p); err != nil {
		t.Fatal(err)
	}
	keys := func(m map[string]any) []string {
		var out []string
		for k := range m {
			out = append(out, k)
		}
		slices.Sort(out)
		return out
	}
	if got := keys(p); !slices.Equal(got, []string{"created", "from", "idevid_key_sha256", "manufacturer", "seq", "serial", "to"}) {
		t.Fatalf("payload fields %v", got)
	}
	from, to := p["from"].(map[string]any), p["to"].(map[string]any)
	if !slices.Equal(keys(from), []string{"key", "name"}) || !slices.Equal(keys(to), []string{"key_id", "name"}) {
		t.Fatalf("from %v, to %v", keys(from), keys(to))
	}
	key, err := base64.StdEncoding.DecodeString(from["key"].(string))
	if err != nil || !bytes.Equal(key, o.alpha.Key.Public().Bytes()) {
		t.Fatalf("from.key is not the seller's key in base64: %v", err)
	}
	if to["key_id"] != o.beta.KeyID() || p["seq"] != float64(1) || p["created"] != "2026-12-01T09:30:00Z" {
		t.Fatalf("payload %v", p)
	}
}

func TestSign(t *testing.T) {
	o := newOwners(t)
	tests := []struct {
		name string
		rec  *Record
		want error
	}{
		{"ok/valid", record(keyedSerial, 1, o.alpha, o.beta), nil},
		{"fail/key-is-not-from-key", record(keyedSerial, 1, o.beta, o.gamma), ErrInvalid},
		{"fail/invalid-record", func() *Record { r := record("A/B", 1, o.alpha, o.beta); return r }(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env, err := Sign(tt.rec, o.alpha.Key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Sign: %v, want %v", err, tt.want)
			}
			if err != nil {
				return
			}
			got, err := Open(env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got.Record, *tt.rec) || !bytes.Equal(got.Envelope, env) || got.FromKeyID != o.alpha.KeyID() {
				t.Fatalf("opened %+v", got.Record)
			}
		})
	}
}

func TestFile(t *testing.T) {
	o := newOwners(t)
	a := mustSign(t, record(keyedSerial, 1, o.alpha, o.beta), o.alpha.Key)
	b := mustSign(t, record(keyedSerial, 2, o.beta, o.gamma), o.beta.Key)
	tests := []struct {
		name  string
		chain [][]byte
	}{
		{"ok/one-record-is-the-bare-envelope", [][]byte{a}},
		{"ok/chain", [][]byte{a, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := EncodeFile(tt.chain)
			if err != nil {
				t.Fatal(err)
			}
			if len(tt.chain) == 1 && !bytes.Equal(f, a) {
				t.Fatal("a file of one record is not the envelope")
			}
			got, err := ParseFile(append(f, '\n'))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.chain) {
				t.Fatalf("%d records, want %d", len(got), len(tt.chain))
			}
			for i := range got {
				if _, err := Open(got[i]); err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
			}
		})
	}
	many := make([][]byte, MaxChain+1)
	for i := range many {
		many[i] = a
	}
	if _, err := EncodeFile(many); !errors.Is(err, ErrInvalid) {
		t.Fatalf("EncodeFile of %d records: %v", len(many), err)
	}
	raw, _ := json.Marshal(func() []json.RawMessage {
		out := make([]json.RawMessage, len(many))
		for i := range many {
			out[i] = many[i]
		}
		return out
	}())
	for _, bad := range [][]byte{raw, []byte(`[{}, 1`), []byte(`"envelope"`), []byte(`[] []`)} {
		if _, err := ParseFile(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseFile(%.20q): %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzOpen checks that no transfer file makes the parsers panic, and that
// whatever opens is a valid record.
func FuzzOpen(f *testing.F) {
	o := newOwners(f)
	env := mustSign(f, record(keyedSerial, 1, o.alpha, o.beta), o.alpha.Key)
	f.Add(env)
	f.Add(chainFile(f, env, mustSign(f, record(keyedSerial, 2, o.beta, o.gamma), o.beta.Key)))
	f.Add([]byte(`{"payloadType":"application/vnd.embark.transfer.v1+json","payload":"e30=","signatures":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		envs, err := ParseFile(b)
		if err != nil {
			return
		}
		for _, e := range envs {
			r, err := Open(e)
			if err != nil {
				continue
			}
			if err := r.Validate(); err != nil {
				t.Fatalf("opened an invalid record: %v", err)
			}
		}
	})
}

func BenchmarkOpen(b *testing.B) {
	o := newOwners(b)
	env := mustSign(b, record(keyedSerial, 1, o.alpha, o.beta), o.alpha.Key)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(env); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(env)), "envelope-bytes")
}
