package audit

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

func (l testLog) bundle(t testing.TB, keys ...*hybridsig.PublicKey) []byte {
	t.Helper()
	var buf bytes.Buffer
	var last uint64
	if n := len(l.entries); n > 0 {
		last = l.entries[n-1].Seq
	}
	w, err := NewBundleWriter(&buf, BundleHeader{Created: time.Unix(1_800_000_000, 0), Keys: keys,
		Checkpoints: uint64(len(l.cps)), Last: last})
	if err != nil {
		t.Fatal(err)
	}
	for at := uint64(0); at <= last; at++ {
		if c, ok := l.cps[at]; ok {
			if err := w.Checkpoint(at, c); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, e := range l.entries {
		if err := w.Entry(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestBundle(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	l := newTestLog(t, k, 10, 4, 8)
	b := l.bundle(t, k.Public())

	rep, err := VerifyBundle(bytes.NewReader(b), k.Public())
	if err != nil {
		t.Fatalf("ok/pinned: %v", err)
	}
	if !rep.Pinned || rep.Entries != 10 || rep.Checkpoints != 2 || rep.LastCheckpoint.Seq != 8 ||
		!rep.Created.Equal(time.Unix(1_800_000_000, 0)) || len(rep.BundleKeys) != 1 || rep.BundleKeys[0] != k.Public().KeyID() {
		t.Fatalf("ok/pinned: %+v", rep)
	}
	rep, err = VerifyBundle(bytes.NewReader(b))
	if err != nil || rep.Pinned || rep.Checkpoints != 2 {
		t.Fatalf("ok/keys from the bundle: %+v, %v", rep, err)
	}
	_, err = VerifyBundle(bytes.NewReader(b), other.Public())
	wantBroken(t, err, 4, ReasonCheckpointKey)

	// A bundle carrying another key than the one that signed fails
	// without a pinned key too.
	_, err = VerifyBundle(bytes.NewReader(l.bundle(t, other.Public())))
	wantBroken(t, err, 4, ReasonCheckpointKey)

	tampered := l.clone()
	tampered.entries[4].Detail = "edited"
	_, err = VerifyBundle(bytes.NewReader(tampered.bundle(t, k.Public())), k.Public())
	wantBroken(t, err, 5, ReasonContent)

	deleted := l.clone()
	deleted.entries = append(deleted.entries[:5:5], deleted.entries[6:]...)
	_, err = VerifyBundle(bytes.NewReader(deleted.bundle(t, k.Public())), k.Public())
	wantBroken(t, err, 6, ReasonMissing)

	// Cut anywhere after the header: never accepted.
	hdrLen := headerLen(t, b)
	for cut := hdrLen; cut < len(b); cut += 97 {
		_, err := VerifyBundle(bytes.NewReader(b[:cut]), k.Public())
		if !errors.Is(err, ErrBroken) {
			t.Fatalf("fail/cut at byte %d of %d: %v", cut, len(b), err)
		}
	}
	// Any flipped byte after the header: never accepted.
	for i := hdrLen; i < len(b); i += 13 {
		c := bytes.Clone(b)
		c[i] ^= 0x40
		if _, err := VerifyBundle(bytes.NewReader(c), k.Public()); err == nil {
			t.Fatalf("fail/byte %d flipped: accepted", i)
		}
	}
}

func headerLen(t *testing.T, b []byte) int {
	t.Helper()
	var raw cbor.RawMessage
	rest, err := cbor.UnmarshalFirst(b, &raw)
	if err != nil {
		t.Fatal(err)
	}
	return len(b) - len(rest)
}

func TestBundleHeader(t *testing.T) {
	k := mustKey(t)
	header := func(h bundleHeader) []byte {
		b, err := encMode.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := bundleHeader{Format: BundleFormat, Version: BundleVersion, Keys: [][]byte{k.Public().Bytes()}}
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"ok/empty log", header(good), nil},
		{"fail/empty file", nil, ErrBundle},
		{"fail/not CBOR", []byte("{\"entries\": []}"), ErrBundle},
		{"fail/other format", header(bundleHeader{Format: "other", Version: BundleVersion}), ErrBundle},
		{"fail/version 2", header(bundleHeader{Format: BundleFormat, Version: 2}), ErrBundle},
		{"fail/bad key", header(bundleHeader{Format: BundleFormat, Version: BundleVersion, Keys: [][]byte{{1, 2, 3}}}), ErrBundle},
		{"fail/announces checkpoints it lacks", header(bundleHeader{Format: BundleFormat, Version: BundleVersion, Checkpoints: 1}), ErrBroken},
		{"fail/announces entries it lacks", header(bundleHeader{Format: BundleFormat, Version: BundleVersion, Last: 3}), ErrBroken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyBundle(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}
