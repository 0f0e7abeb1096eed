package manifest

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"testing"
	"time"
)

func writeAll(t *testing.T, dir string, m *Manifest) *Writer {
	t.Helper()
	w, err := NewWriter(dir, Header{Manufacturer: m.Manufacturer, Revision: m.Revision, IssuedAt: m.IssuedAt})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range m.Devices {
		if err := w.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// The writer makes the envelope Sign makes: same payload bytes, same
// layout, a signature that Open accepts.
func TestWriterMatchesSign(t *testing.T) {
	a, _ := testKeys(t)
	for _, n := range []int{1, 3, 200} {
		m := testManifest(n)
		dir := t.TempDir()
		w := writeAll(t, dir, m)
		if w.Len() != n {
			t.Fatalf("Len = %d, want %d", w.Len(), n)
		}
		var out bytes.Buffer
		written, err := w.SignTo(&out, a)
		if err != nil {
			t.Fatal(err)
		}
		if written != int64(out.Len()) {
			t.Errorf("SignTo says %d bytes, wrote %d", written, out.Len())
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Errorf("temporary files left: %v", ents)
		}
		signed := mustSign(t, m, a)
		got, want := decodeEnvelope(t, out.Bytes()), decodeEnvelope(t, signed)
		if !bytes.Equal(got.Payload, want.Payload) || got.PayloadType != want.PayloadType ||
			len(got.Signatures) != 1 || got.Signatures[0].KeyID != want.Signatures[0].KeyID {
			t.Fatalf("%d devices: the writer's envelope differs from Sign's", n)
		}
		// Same layout: only the signature differs (both are randomized).
		sigAt := bytes.Index(signed, []byte(`"sig":"`))
		if sigAt < 0 || !bytes.Equal(out.Bytes()[:sigAt], signed[:sigAt]) {
			t.Errorf("%d devices: the envelope up to the signature differs from Sign's", n)
		}
		opened, err := Open(out.Bytes(), lookupOf(a.Public()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(opened, m) {
			t.Errorf("%d devices: opened %+v", n, opened)
		}
	}
}

// The writer refuses what Validate refuses, with the same error, and goes
// on without the refused entry.
func TestWriterRefuses(t *testing.T) {
	a, _ := testKeys(t)
	tests := []struct {
		name string
		bad  func(m *Manifest) Entry // an entry to append as the last one
	}{
		{name: "fail/duplicate serial", bad: func(m *Manifest) Entry {
			e := entry("ACME-000999")
			e.Serial = m.Devices[2].Serial
			return e
		}},
		{name: "fail/duplicate key", bad: func(m *Manifest) Entry {
			e := entry("ACME-000999")
			e.IDevIDKeySHA256 = m.Devices[1].IDevIDKeySHA256
			return e
		}},
		{name: "fail/invalid key", bad: func(*Manifest) Entry {
			e := entry("ACME-000999")
			e.IDevIDKeySHA256 = "ABC"
			return e
		}},
		{name: "fail/serial with a slash", bad: func(*Manifest) Entry { return entry("ACME/1") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest(5)
			bad := tt.bad(m)
			whole := testManifest(5)
			whole.Devices = append(whole.Devices, bad)
			want := whole.Validate()
			var wantVE *ValidationError
			if !errors.As(want, &wantVE) {
				t.Fatalf("Validate = %v", want)
			}
			w := writeAll(t, t.TempDir(), m)
			defer w.Close()
			err := w.Add(bad)
			var ve *ValidationError
			if !errors.As(err, &ve) || !reflect.DeepEqual(ve, wantVE) {
				t.Fatalf("Add = %#v\nwant %#v", err, wantVE)
			}
			// The entry was not added: a valid one may follow.
			next := entry("ACME-000100")
			if err := w.Add(next); err != nil {
				t.Fatalf("Add after a refusal: %v", err)
			}
			var out bytes.Buffer
			if _, err := w.SignTo(&out, a); err != nil {
				t.Fatal(err)
			}
			opened, err := Open(out.Bytes(), lookupOf(a.Public()))
			if err != nil {
				t.Fatal(err)
			}
			if n := len(opened.Devices); n != 6 || opened.Devices[5] != next {
				t.Fatalf("opened %d devices, last %+v", n, opened.Devices[n-1])
			}
		})
	}
}

func TestWriterRefusesHeaderAndEmpty(t *testing.T) {
	a, _ := testKeys(t)
	for _, h := range []Header{
		{Manufacturer: "ACME", Revision: 1, IssuedAt: issued},
		{Manufacturer: "acme", Revision: 0, IssuedAt: issued},
		{Manufacturer: "acme", Revision: 1},
	} {
		w, err := NewWriter(t.TempDir(), h)
		var ve *ValidationError
		if !errors.As(err, &ve) || !errors.Is(err, ErrInvalid) || ve.Device != -1 || w != nil {
			t.Errorf("NewWriter(%+v) = %v", h, err)
		}
	}
	w, err := NewWriter(t.TempDir(), Header{Manufacturer: "acme", Revision: 1, IssuedAt: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var out bytes.Buffer
	_, err = w.SignTo(&out, a)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "devices" || out.Len() != 0 {
		t.Fatalf("SignTo without devices = %v, wrote %d bytes", err, out.Len())
	}
}
