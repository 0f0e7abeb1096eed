package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
)

func TestKeyFingerprint(t *testing.T) {
	spki := []byte("not really a SubjectPublicKeyInfo")
	sum := sha256.Sum256(spki)
	if got := KeyFingerprint(spki); got != hex.EncodeToString(sum[:]) || !isSHA256Hex(got) {
		t.Fatalf("KeyFingerprint = %s", got)
	}
}

// TestNameRuleMatchesDevice keeps the manufacturer name rule of the wire
// format the same as the registry's.
func TestNameRuleMatchesDevice(t *testing.T) {
	for _, name := range []string{
		"acme", "a", "0", "acme.example", "acme-1", strings.Repeat("a", 63),
		"", "Acme", "-acme", ".acme", "acme:x", "acme/x", "acme x", strings.Repeat("a", 64), "é",
	} {
		if got, want := ValidName(name), device.ValidManufacturerName(name) == nil; got != want {
			t.Errorf("ValidName(%q) = %v, device.ValidManufacturerName says %v", name, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(m *Manifest)
		want   error
		field  string
		device int
	}{
		{name: "ok/full", edit: func(*Manifest) {}},
		{name: "ok/only required entry fields", edit: func(m *Manifest) {
			m.Devices = []Entry{{Serial: "X1", IDevIDKeySHA256: fakeKey("X1")}}
		}},
		{name: "ok/serial with unicode and colon", edit: func(m *Manifest) { m.Devices[0].Serial = "ÄCME:0001-ß" }},
		{name: "ok/serial of 128 bytes", edit: func(m *Manifest) { m.Devices[0].Serial = strings.Repeat("S", 128) }},
		{name: "fail/manufacturer upper case", edit: func(m *Manifest) { m.Manufacturer = "ACME" },
			want: ErrInvalid, field: "manufacturer", device: -1},
		{name: "fail/manufacturer empty", edit: func(m *Manifest) { m.Manufacturer = "" },
			want: ErrInvalid, field: "manufacturer", device: -1},
		{name: "fail/manufacturer with colon", edit: func(m *Manifest) { m.Manufacturer = "acme:x" },
			want: ErrInvalid, field: "manufacturer", device: -1},
		{name: "fail/revision 0", edit: func(m *Manifest) { m.Revision = 0 },
			want: ErrInvalid, field: "revision", device: -1},
		{name: "fail/no issue time", edit: func(m *Manifest) { m.IssuedAt = time.Time{} },
			want: ErrInvalid, field: "issued_at", device: -1},
		{name: "fail/no devices", edit: func(m *Manifest) { m.Devices = nil },
			want: ErrInvalid, field: "devices", device: -1},
		{name: "fail/empty serial", edit: func(m *Manifest) { m.Devices[1].Serial = "" },
			want: ErrInvalid, field: "serial", device: 1},
		{name: "fail/serial with slash", edit: func(m *Manifest) { m.Devices[1].Serial = "ACME/1" },
			want: ErrInvalid, field: "serial", device: 1},
		{name: "fail/serial with space", edit: func(m *Manifest) { m.Devices[1].Serial = "ACME 1" },
			want: ErrInvalid, field: "serial", device: 1},
		{name: "fail/serial with control character", edit: func(m *Manifest) { m.Devices[1].Serial = "ACME\x001" },
			want: ErrInvalid, field: "serial", device: 1},
		{name: "fail/serial not UTF-8", edit: func(m *Manifest) { m.Devices[1].Serial = "ACME\xff" },
			want: ErrInvalid, field: "serial", device: 1},
		{name: "fail/serial of 129 bytes", edit: func(m *Manifest) { m.Devices[1].Serial = strings.Repeat("S", 129) },
			want: ErrInvalid, field: "serial", device: 1},
		{name: "fail/key upper-case hex", edit: func(m *Manifest) { m.Devices[2].IDevIDKeySHA256 = strings.ToUpper(m.Devices[2].IDevIDKeySHA256) },
			want: ErrInvalid, field: "idevid_key_sha256", device: 2},
		{name: "fail/key missing", edit: func(m *Manifest) { m.Devices[2].IDevIDKeySHA256 = "" },
			want: ErrInvalid, field: "idevid_key_sha256", device: 2},
		{name: "fail/key 63 digits", edit: func(m *Manifest) { m.Devices[2].IDevIDKeySHA256 = m.Devices[2].IDevIDKeySHA256[:63] },
			want: ErrInvalid, field: "idevid_key_sha256", device: 2},
		{name: "fail/key not hex", edit: func(m *Manifest) { m.Devices[2].IDevIDKeySHA256 = strings.Repeat("g", 64) },
			want: ErrInvalid, field: "idevid_key_sha256", device: 2},
		{name: "fail/firmware digest not hex", edit: func(m *Manifest) { m.Devices[0].FirmwareSHA256 = "abc" },
			want: ErrInvalid, field: "firmware_sha256", device: 0},
		{name: "fail/sbom digest upper case", edit: func(m *Manifest) { m.Devices[0].SBOMSHA256 = strings.ToUpper(fakeKey("x")) },
			want: ErrInvalid, field: "sbom_sha256", device: 0},
		{name: "fail/model with newline", edit: func(m *Manifest) { m.Devices[0].Model = "sensor\nx" },
			want: ErrInvalid, field: "model", device: 0},
		{name: "fail/owner too long", edit: func(m *Manifest) { m.Devices[0].Owner = strings.Repeat("o", MaxTextSize+1) },
			want: ErrInvalid, field: "owner", device: 0},
		{name: "fail/duplicate serial with different keys", edit: func(m *Manifest) { m.Devices[2].Serial = m.Devices[0].Serial },
			want: ErrDuplicate, field: "serial", device: 2},
		{name: "fail/one key for two serials", edit: func(m *Manifest) { m.Devices[2].IDevIDKeySHA256 = m.Devices[1].IDevIDKeySHA256 },
			want: ErrDuplicate, field: "idevid_key_sha256", device: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := testManifest(3)
			tt.edit(m)
			before := *m
			before.Devices = append([]Entry(nil), m.Devices...)
			err := m.Validate()
			if !reflect.DeepEqual(before, *m) {
				t.Fatal("Validate changed the manifest")
			}
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err %v is not a *ValidationError", err)
			}
			if ve.Field != tt.field || ve.Device != tt.device {
				t.Fatalf("error names devices[%d].%s, want devices[%d].%s", ve.Device, ve.Field, tt.device, tt.field)
			}
			if tt.device >= 0 && (ve.Serial != m.Devices[tt.device].Serial || !strings.Contains(err.Error(), strconv.Quote(ve.Serial))) {
				t.Fatalf("error %q does not name serial %q", err, m.Devices[tt.device].Serial)
			}
		})
	}
}
