package cabackup

import (
	"errors"
	"testing"
)

// FuzzOpen: never a panic, every failure classified.
func FuzzOpen(f *testing.F) {
	dir, _ := newCA(f)
	k := mustGenerate(f)
	good := mustSeal(f, dir, k.Public())
	f.Add(good)
	f.Add(good[:fixedHeader])
	f.Add([]byte(Magic))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := Open(b, k)
		if err == nil {
			return
		}
		for _, want := range []error{ErrMalformed, ErrUnsupported, ErrWrongKey, ErrOpen, ErrContent} {
			if errors.Is(err, want) {
				return
			}
		}
		t.Fatalf("unclassified error: %v", err)
	})
}
