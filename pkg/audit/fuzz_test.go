package audit

import (
	"bytes"
	"errors"
	"testing"
)

func FuzzParseCheckpoint(f *testing.F) {
	k := mustKey(f)
	sc := mustCheckpoint(f, k, chain(1)[0])
	f.Add(sc.Body)
	f.Add(sc.Body[:len(sc.Body)-1])
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCheckpoint(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		again, err := c.Marshal()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("accepted a body that does not re-encode to itself: %v", err)
		}
	})
}

// FuzzVerifyBundle feeds arbitrary bundles: never a panic, every failure
// classified, and nothing but the genuine bundle's entries accepted as a
// bundle signed by the key.
func FuzzVerifyBundle(f *testing.F) {
	k := mustKey(f)
	l := newTestLog(f, k, 4, 2, 4)
	good := l.bundle(f, k.Public())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, err := VerifyBundle(bytes.NewReader(b), k.Public())
		if err != nil {
			if !errors.Is(err, ErrBundle) && !errors.Is(err, ErrBroken) && !errors.Is(err, ErrOrder) {
				t.Fatalf("unclassified error: %v", err)
			}
			return
		}
		if rep.Checkpoints > 0 && rep.Last >= 2 && !bytes.Equal(rep.LastCheckpoint.Hash, l.entries[rep.LastCheckpoint.Seq-1].Hash) {
			t.Fatalf("accepted a checkpoint over another log")
		}
	})
}
