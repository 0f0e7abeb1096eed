package vuln

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

var now = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

const operator = "operator:alice"

func openStore(t testing.TB) *bolt.DB {
	t.Helper()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return st
}

func testdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexOf(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// dev returns a new acme device of this model and recorded firmware.
func dev(serial, model, firmware string) device.Device {
	return device.Device{
		ID:    device.ID("acme", serial),
		State: device.Expected,
		Provenance: device.Provenance{Manufacturer: "acme", Serial: serial, IDevIDKeySHA256: hexOf(serial),
			Model: model, FirmwareVersion: firmware},
		UpdatedAt: now,
	}
}

func putDevices(t testing.TB, st store.Store, devs ...device.Device) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		for i := range devs {
			d := devs[i]
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getDevice(t testing.TB, st store.Store, serial string) device.Device {
	t.Helper()
	var d device.Device
	err := st.View(context.Background(), func(r store.Reader) error {
		var err error
		d, err = r.Device(device.ID("acme", serial))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// clearFlag does what policy re-evaluation does to a device's flag.
func clearFlag(t testing.TB, st store.Store, serial string) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		d, err := tx.Device(device.ID("acme", serial))
		if err != nil {
			return err
		}
		d.Flags.Reevaluate = ""
		return tx.PutDevice(&d)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mustImport(t testing.TB, st store.Store, doc []byte) ImportResult {
	t.Helper()
	res, err := Import(context.Background(), st, doc, operator, now)
	if err != nil {
		t.Fatalf("import: %v", err)
	}
	return res
}

// findings returns FindingsFor of an acme product, after checking that the
// open findings the imports kept are those the statements give now.
func findings(t testing.TB, st store.Store, model, firmware string) Findings {
	t.Helper()
	var f Findings
	var fresh []Finding
	err := st.View(context.Background(), func(r store.Reader) error {
		var err error
		if f, err = FindingsFor(r, "acme", model, firmware); err != nil {
			return err
		}
		fresh, err = computeOpen(r, product{"acme", model, firmware})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if fresh == nil {
		fresh = []Finding{}
	}
	if !reflect.DeepEqual(f.Open, fresh) {
		t.Errorf("kept open findings %+v, the statements give %+v", f.Open, fresh)
	}
	return f
}

// openIDs summarises open findings as "id state cvss fixed-in via v<data version>".
func openIDs(f Findings) []string {
	out := []string{}
	for _, o := range f.Open {
		out = append(out, fmt.Sprintf("%s %s %g %s %s v%d", o.ID, o.State, o.CVSS, o.FixedIn, o.Via, o.DataVersion))
	}
	return out
}

// snapshot is everything an import may change.
type snapshot struct {
	Stats   store.Stats
	Records map[string]string
	Devices map[string]device.Device
}

func snap(t testing.TB, st store.Store) snapshot {
	t.Helper()
	ctx := context.Background()
	s := snapshot{Records: map[string]string{}, Devices: map[string]device.Device{}}
	var err error
	if s.Stats, err = st.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	err = st.View(ctx, func(r store.Reader) error {
		for _, kind := range []string{KindMeta, KindSBOM, KindComponents, KindStatement, KindOpen, KindUses, KindRef, KindSerial} {
			if err := r.Records(kind, "", func(k string, v []byte) (bool, error) {
				s.Records[kind+" "+k] = string(v)
				return true, nil
			}); err != nil {
				return err
			}
		}
		return r.Devices("", func(d device.Device) (bool, error) {
			s.Devices[d.ID] = d
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s snapshot) mustEqual(t testing.TB, other snapshot) {
	t.Helper()
	if !reflect.DeepEqual(s, other) {
		t.Errorf("the registry changed:\nbefore %+v\nafter  %+v", s.Stats, other.Stats)
	}
}

// bom returns a CycloneDX 1.6 JSON document with this metadata component
// and these extra top-level members (JSON object members, comma-joined).
func bom(metaComponent string, members ...string) []byte {
	var b strings.Builder
	b.WriteString(`{"bomFormat":"CycloneDX","specVersion":"1.6","version":1`)
	if metaComponent != "" {
		b.WriteString(`,"metadata":{"component":` + metaComponent + `}`)
	}
	for _, m := range members {
		b.WriteString("," + m)
	}
	b.WriteString("}")
	return []byte(b.String())
}

// sensorX142 is the metadata component of acme sensor-x 1.4.2.
const sensorX142 = `{"type":"firmware","bom-ref":"product","name":"sensor-x","version":"1.4.2","purl":"pkg:generic/acme/sensor-x@1.4.2"}`

// vuln returns a vulnerability member with one CVSSv31 rating.
func vulnJSON(id, state string, cvss float64, refs ...string) string {
	var affects []string
	for _, r := range refs {
		affects = append(affects, fmt.Sprintf(`{"ref":%q}`, r))
	}
	s := fmt.Sprintf(`{"id":%q,"ratings":[{"score":%g,"method":"CVSSv31"}]`, id, cvss)
	if state != "" {
		s += fmt.Sprintf(`,"analysis":{"state":%q}`, state)
	}
	if len(affects) > 0 {
		s += `,"affects":[` + strings.Join(affects, ",") + `]`
	}
	return s + "}"
}

func vulns(vs ...string) string { return `"vulnerabilities":[` + strings.Join(vs, ",") + `]` }
