package provenance

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

var now = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

// fixture is the signed material of two simulated manufacturers: acme (with
// manifest revisions 1 and 2) and beta, plus a hybrid key nobody trusts.
type fixture struct {
	acmeTrust, betaTrust []byte
	acmeKey, betaKey     *hybridsig.PrivateKey
	otherKey             *hybridsig.PrivateKey
	// acmeRev1 lists ACME-000001..5; acmeRev2 adds ACME-000006 and 7.
	acmeRev1, acmeRev2 []byte
	// rev2 is acmeRev2 decoded, a base for variants.
	rev2 *manifest.Manifest
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{}
	acme := filepath.Join(t.TempDir(), "acme")
	if _, err := factory.Run(ctx, factory.Options{Out: acme, Count: 5, Clock: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	f.acmeRev1 = readFile(t, filepath.Join(acme, factory.ManifestFile))
	res, err := factory.Run(ctx, factory.Options{Out: acme, Count: 2, Clock: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Revision != 2 || res.Total != 7 {
		t.Fatalf("factory: revision %d with %d devices, want 2 with 7", res.Revision, res.Total)
	}
	f.acmeRev2 = readFile(t, filepath.Join(acme, factory.ManifestFile))
	f.acmeTrust = readFile(t, filepath.Join(acme, factory.TrustFile))
	if f.acmeKey, err = hybridsig.ParsePrivateKeyPEM(readFile(t, filepath.Join(acme, factory.SignerKeyFile))); err != nil {
		t.Fatal(err)
	}

	beta := filepath.Join(t.TempDir(), "beta")
	if _, err := factory.Run(ctx, factory.Options{Out: beta, Count: 1, Manufacturer: "beta", Clock: func() time.Time { return now }}); err != nil {
		t.Fatal(err)
	}
	f.betaTrust = readFile(t, filepath.Join(beta, factory.TrustFile))
	if f.betaKey, err = hybridsig.ParsePrivateKeyPEM(readFile(t, filepath.Join(beta, factory.SignerKeyFile))); err != nil {
		t.Fatal(err)
	}
	if f.otherKey, err = hybridsig.GenerateKey(rand.Reader); err != nil {
		t.Fatal(err)
	}
	pub := f.acmeKey.Public()
	if f.rev2, err = manifest.Open(f.acmeRev2, func(id string) (*hybridsig.PublicKey, bool) { return pub, id == pub.KeyID() }); err != nil {
		t.Fatal(err)
	}
	return f
}

// variant returns a deep copy of revision 2 with another revision number.
func (f *fixture) variant(rev uint64) *manifest.Manifest {
	m := *f.rev2
	m.Revision = rev
	m.Devices = append([]manifest.Entry(nil), f.rev2.Devices...)
	return &m
}

func fingerprint(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// sign signs m with key without validating it.
func sign(t testing.TB, m *manifest.Manifest, key *hybridsig.PrivateKey) []byte {
	t.Helper()
	payload, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	env, err := manifest.SignEnvelope(manifest.PayloadType, payload, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// splice returns an envelope of m under acme's key id whose signature is
// the ML-DSA-65 half signed by mlKey followed by the ECDSA half signed by
// ecKey.
func splice(t testing.TB, m *manifest.Manifest, keyID string, mlKey, ecKey *hybridsig.PrivateKey) []byte {
	t.Helper()
	payload, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	pae := manifest.PAE(manifest.PayloadType, payload)
	mlSig, err := mlKey.Sign(rand.Reader, pae)
	if err != nil {
		t.Fatal(err)
	}
	ecSig, err := ecKey.Sign(rand.Reader, pae)
	if err != nil {
		t.Fatal(err)
	}
	n := hybridsig.MLDSASignatureSize
	sig := append(bytes.Clone(mlSig[:n]), ecSig[n:]...)
	env, err := json.Marshal(manifest.Envelope{
		PayloadType: manifest.PayloadType,
		Payload:     payload,
		Signatures:  []manifest.Signature{{KeyID: keyID, Sig: sig}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func openStore(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return db
}

// snapshot is everything an import or a trust may change.
type snapshot struct {
	stats         store.Stats
	devices       []device.Device
	manufacturers []device.Manufacturer
	lastAudit     audit.Entry
}

func take(t testing.TB, st store.Store) snapshot {
	t.Helper()
	ctx := context.Background()
	var s snapshot
	var err error
	if s.stats, err = st.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	s.stats.Bytes = 0 // the file size is not content
	err = st.View(ctx, func(r store.Reader) error {
		s.devices = nil
		if err := r.Devices("", func(d device.Device) (bool, error) {
			s.devices = append(s.devices, d)
			return true, nil
		}); err != nil {
			return err
		}
		if s.manufacturers, err = r.Manufacturers(); err != nil {
			return err
		}
		s.lastAudit, err = r.LastAudit()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s snapshot) device(t testing.TB, serial string) device.Device {
	t.Helper()
	for _, d := range s.devices {
		if d.Provenance.Serial == serial {
			return d
		}
	}
	t.Fatalf("no device %s", serial)
	return device.Device{}
}

func (s snapshot) manufacturer(t testing.TB, name string) device.Manufacturer {
	t.Helper()
	for _, m := range s.manufacturers {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no manufacturer %s", name)
	return device.Manufacturer{}
}

// sentinels are every error a refusal may match; a case names those it
// must match and the others must not match.
var sentinels = map[string]error{
	"manifest.ErrMalformed":               manifest.ErrMalformed,
	"manifest.ErrPayloadType":             manifest.ErrPayloadType,
	"manifest.ErrUnknownSigner":           manifest.ErrUnknownSigner,
	"manifest.ErrSignature":               manifest.ErrSignature,
	"manifest.ErrInvalid":                 manifest.ErrInvalid,
	"manifest.ErrDuplicate":               manifest.ErrDuplicate,
	"manifest.ErrTooLarge":                manifest.ErrTooLarge,
	"manifest.ErrWrongManufacturer":       manifest.ErrWrongManufacturer,
	"hybridsig.ErrECDSA":                  hybridsig.ErrECDSA,
	"hybridsig.ErrMLDSA":                  hybridsig.ErrMLDSA,
	"hybridsig.ErrMalformed":              hybridsig.ErrMalformed,
	"provenance.ErrUntrustedManufacturer": ErrUntrustedManufacturer,
	"provenance.ErrStaleRevision":         ErrStaleRevision,
	"provenance.ErrKeyChanged":            ErrKeyChanged,
	"provenance.ErrBadBundle":             ErrBadBundle,
	"store.ErrNotFound":                   store.ErrNotFound,
	"store.ErrConflict":                   store.ErrConflict,
}

func checkErr(t *testing.T, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %v", want)
	}
	for name, s := range sentinels {
		wanted := false
		for _, w := range want {
			wanted = wanted || w == s
		}
		if got := errors.Is(err, s); got != wanted {
			t.Errorf("errors.Is(err, %s) = %v, want %v; err: %v", name, got, wanted, err)
		}
	}
}

func TestImportRefused(t *testing.T) {
	f := newFixture(t)
	acmeID := f.acmeKey.Public().KeyID()

	rev3 := func(mutate func(m *manifest.Manifest)) *manifest.Manifest {
		m := f.variant(3)
		m.Devices = append(m.Devices, manifest.Entry{Serial: "ACME-000100", IDevIDKeySHA256: fingerprint("new device")})
		if mutate != nil {
			mutate(m)
		}
		return m
	}
	namedBeta := rev3(func(m *manifest.Manifest) { m.Manufacturer = "beta" })
	namedGamma := rev3(func(m *manifest.Manifest) { m.Manufacturer = "gamma" })
	dupSerial := rev3(func(m *manifest.Manifest) {
		m.Devices = append(m.Devices, manifest.Entry{Serial: "ACME-000001", IDevIDKeySHA256: fingerprint("clone")})
	})
	keyChanged := rev3(func(m *manifest.Manifest) { m.Devices[0].IDevIDKeySHA256 = fingerprint("replacement key") })
	keyMoved := rev3(func(m *manifest.Manifest) {
		// ACME-000001 leaves the manifest and a new serial claims its key.
		m.Devices[len(m.Devices)-1].IDevIDKeySHA256 = m.Devices[0].IDevIDKeySHA256
		m.Devices = m.Devices[1:]
	})
	rev0 := rev3(func(m *manifest.Manifest) { m.Revision = 0 })
	bundle := func(mutate func(tb *manifest.TrustBundle)) []byte {
		var tb manifest.TrustBundle
		if err := json.Unmarshal(f.acmeTrust, &tb); err != nil {
			t.Fatal(err)
		}
		mutate(&tb)
		b, err := tb.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	noKeys := bundle(func(tb *manifest.TrustBundle) { tb.ManifestKeys = nil })
	noRoots := bundle(func(tb *manifest.TrustBundle) { tb.Roots = nil })
	badKey := bundle(func(tb *manifest.TrustBundle) {
		tb.ManifestKeys = []string{"-----BEGIN EMBARK HYBRID PUBLIC KEY-----\n-----END EMBARK HYBRID PUBLIC KEY-----\n"}
	})

	importEnv := func(env []byte) func(context.Context, store.Store) error {
		return func(ctx context.Context, st store.Store) error {
			_, err := ImportManifest(ctx, st, env, "operator:test", now)
			return err
		}
	}
	trust := func(b []byte) func(context.Context, store.Store) error {
		return func(ctx context.Context, st store.Store) error {
			_, err := TrustManufacturer(ctx, st, b, "operator:test", now)
			return err
		}
	}

	tests := []struct {
		name string
		op   func(context.Context, store.Store) error
		want []error
	}{
		{name: "fail/bad ECDSA half", op: importEnv(splice(t, rev3(nil), acmeID, f.acmeKey, f.otherKey)),
			want: []error{manifest.ErrSignature, hybridsig.ErrECDSA}},
		{name: "fail/bad ML-DSA half", op: importEnv(splice(t, rev3(nil), acmeID, f.otherKey, f.acmeKey)),
			want: []error{manifest.ErrSignature, hybridsig.ErrMLDSA}},
		{name: "fail/both halves by another key", op: importEnv(splice(t, rev3(nil), acmeID, f.otherKey, f.otherKey)),
			want: []error{manifest.ErrSignature, hybridsig.ErrMLDSA, hybridsig.ErrECDSA}},
		{name: "fail/signed by a key of no trusted manufacturer", op: importEnv(sign(t, rev3(nil), f.otherKey)),
			want: []error{manifest.ErrUnknownSigner}},
		{name: "fail/names beta, signed with acme's key", op: importEnv(sign(t, namedBeta, f.acmeKey)),
			want: []error{ErrUntrustedManufacturer}},
		{name: "fail/names acme, signed with beta's key", op: importEnv(sign(t, rev3(nil), f.betaKey)),
			want: []error{ErrUntrustedManufacturer}},
		{name: "fail/names an untrusted manufacturer", op: importEnv(sign(t, namedGamma, f.acmeKey)),
			want: []error{ErrUntrustedManufacturer}},
		{name: "fail/duplicate serial with another key", op: importEnv(sign(t, dupSerial, f.acmeKey)),
			want: []error{manifest.ErrDuplicate}},
		{name: "fail/older revision", op: importEnv(f.acmeRev1), want: []error{ErrStaleRevision}},
		{name: "fail/known serial with another IDevID key", op: importEnv(sign(t, keyChanged, f.acmeKey)),
			want: []error{ErrKeyChanged}},
		{name: "fail/new serial with the IDevID key of a known device", op: importEnv(sign(t, keyMoved, f.acmeKey)),
			want: []error{ErrKeyChanged}},
		{name: "fail/invalid manifest (revision 0)", op: importEnv(sign(t, rev0, f.acmeKey)),
			want: []error{manifest.ErrInvalid}},
		{name: "fail/malformed envelope JSON", op: importEnv([]byte(`{"payloadType":`)),
			want: []error{manifest.ErrMalformed}},
		{name: "fail/empty envelope", op: importEnv(nil), want: []error{manifest.ErrMalformed}},
		{name: "fail/malformed payload JSON", op: importEnv(func() []byte {
			env, err := manifest.SignEnvelope(manifest.PayloadType, []byte(`{"manufacturer":"acme",`), f.acmeKey)
			if err != nil {
				t.Fatal(err)
			}
			return env
		}()), want: []error{manifest.ErrMalformed}},
		{name: "fail/trust bundle is garbage", op: trust([]byte("garbage")),
			want: []error{ErrBadBundle, manifest.ErrMalformed}},
		{name: "fail/trust bundle is empty", op: trust(nil), want: []error{ErrBadBundle, manifest.ErrMalformed}},
		{name: "fail/trust bundle without keys", op: trust(noKeys), want: []error{ErrBadBundle, manifest.ErrInvalid}},
		{name: "fail/trust bundle without roots", op: trust(noRoots), want: []error{ErrBadBundle, manifest.ErrInvalid}},
		{name: "fail/trust bundle with an empty key", op: trust(badKey), want: []error{ErrBadBundle, manifest.ErrMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			st := openStore(t)
			mustTrust(t, st, f.acmeTrust)
			mustTrust(t, st, f.betaTrust)
			mustImport(t, st, f.acmeRev2)
			before := take(t, st)
			err := tt.op(ctx, st)
			t.Logf("refused: %v", err)
			checkErr(t, err, tt.want...)
			after := take(t, st)
			if !reflect.DeepEqual(before, after) {
				t.Errorf("the registry changed:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
}

// The payload of a DSSE envelope is base64 in JSON, so replacing text in
// the envelope breaks its encoding rather than its signature; this test
// changes the payload itself.
func TestImportTamperedPayload(t *testing.T) {
	f := newFixture(t)
	var env manifest.Envelope
	if err := json.Unmarshal(f.acmeRev2, &env); err != nil {
		t.Fatal(err)
	}
	env.Payload = bytes.Replace(env.Payload, []byte(`"revision":2`), []byte(`"revision":9`), 1)
	tampered, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t)
	mustTrust(t, st, f.acmeTrust)
	before := take(t, st)
	_, err = ImportManifest(context.Background(), st, tampered, "operator:test", now)
	checkErr(t, err, manifest.ErrSignature, hybridsig.ErrMLDSA, hybridsig.ErrECDSA)
	if after := take(t, st); !reflect.DeepEqual(before, after) {
		t.Errorf("the registry changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

func mustTrust(t testing.TB, st store.Store, b []byte) TrustResult {
	t.Helper()
	res, err := TrustManufacturer(context.Background(), st, b, "operator:test", now)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func mustImport(t testing.TB, st store.Store, env []byte) ImportResult {
	t.Helper()
	res, err := ImportManifest(context.Background(), st, env, "operator:test", now)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func TestImportAccepted(t *testing.T) {
	f := newFixture(t)
	acmeID := f.acmeKey.Public().KeyID()
	tests := []struct {
		name  string
		first []byte // imported before
		env   []byte
		want  ImportResult
		// wantDevices is the registry's device count after the import.
		wantDevices int
	}{
		{name: "ok/first import", env: f.acmeRev1,
			want:        ImportResult{Manufacturer: "acme", Revision: 1, Devices: 5, New: 5, SignerKey: acmeID},
			wantDevices: 5},
		{name: "ok/same revision again updates, adds nothing", first: f.acmeRev1, env: f.acmeRev1,
			want:        ImportResult{Manufacturer: "acme", Revision: 1, Devices: 5, Updated: 5, SignerKey: acmeID},
			wantDevices: 5},
		{name: "ok/revision 2 adds devices", first: f.acmeRev1, env: f.acmeRev2,
			want:        ImportResult{Manufacturer: "acme", Revision: 2, Devices: 7, New: 2, Updated: 5, SignerKey: acmeID},
			wantDevices: 7},
		{name: "ok/a later revision may skip numbers", first: f.acmeRev1, env: sign(t, f.variant(10), f.acmeKey),
			want:        ImportResult{Manufacturer: "acme", Revision: 10, Devices: 7, New: 2, Updated: 5, SignerKey: acmeID},
			wantDevices: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := openStore(t)
			mustTrust(t, st, f.acmeTrust)
			mustTrust(t, st, f.betaTrust)
			if tt.first != nil {
				mustImport(t, st, tt.first)
			}
			before := take(t, st)
			got := mustImport(t, st, tt.env)
			if got != tt.want {
				t.Errorf("result %+v, want %+v", got, tt.want)
			}
			after := take(t, st)
			if after.stats.Devices != tt.wantDevices || len(after.devices) != tt.wantDevices {
				t.Errorf("%d devices (stats %d), want %d", len(after.devices), after.stats.Devices, tt.wantDevices)
			}
			if after.stats.AuditEntries != before.stats.AuditEntries+1 {
				t.Errorf("audit entries %d -> %d, want one more", before.stats.AuditEntries, after.stats.AuditEntries)
			}
			if e := after.lastAudit; e.Action != "import-manifest" || e.Outcome != "ok" || e.Actor != "operator:test" || !e.Time.Equal(now) {
				t.Errorf("last audit entry %+v", e)
			}
			m := after.manufacturer(t, "acme")
			if m.ManifestRevision != tt.want.Revision || m.Devices != uint64(tt.wantDevices) {
				t.Errorf("manufacturer: revision %d, %d devices; want %d, %d", m.ManifestRevision, m.Devices, tt.want.Revision, tt.wantDevices)
			}
			if b := after.manufacturer(t, "beta"); !reflect.DeepEqual(b, before.manufacturer(t, "beta")) {
				t.Errorf("beta changed: %+v", b)
			}
			for _, d := range after.devices {
				p := d.Provenance
				if d.ID != device.ID("acme", p.Serial) || p.Manufacturer != "acme" || p.ManifestRevision != tt.want.Revision {
					t.Errorf("device %s: provenance %+v", d.ID, p)
				}
				if d.State != device.Expected || d.Cause != "manifest" {
					t.Errorf("device %s: state %s, cause %q", d.ID, d.State, d.Cause)
				}
				if !isHex64(p.IDevIDKeySHA256) || p.Model != "sensor-x" || p.Owner != "example-operator" {
					t.Errorf("device %s: provenance %+v", d.ID, p)
				}
			}
			// Devices known before keep their key, state and history.
			for _, old := range before.devices {
				d := after.device(t, old.Provenance.Serial)
				if d.Provenance.IDevIDKeySHA256 != old.Provenance.IDevIDKeySHA256 || d.State != old.State || d.Current != old.Current {
					t.Errorf("device %s changed: %+v -> %+v", d.ID, old, d)
				}
			}
		})
	}
}

func isHex64(s string) bool {
	b, err := hex.DecodeString(s)
	return err == nil && len(b) == 32 && hex.EncodeToString(b) == s
}

// A manifest keeps what the registry learned about a device since: an
// import never resets a device's state.
func TestImportKeepsState(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st := openStore(t)
	mustTrust(t, st, f.acmeTrust)
	mustImport(t, st, f.acmeRev1)
	id := device.ID("acme", "ACME-000002")
	if err := st.Update(ctx, func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		d.State, d.Zone, d.Cause, d.Reason = device.Quarantined, "lab", "operator:alice", "firmware under review"
		return tx.PutDevice(&d)
	}); err != nil {
		t.Fatal(err)
	}
	mustImport(t, st, f.acmeRev2)
	var d device.Device
	if err := st.View(ctx, func(r store.Reader) error {
		var err error
		d, err = r.Device(id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if d.State != device.Quarantined || d.Zone != "lab" || d.Cause != "operator:alice" || d.Provenance.ManifestRevision != 2 {
		t.Errorf("after revision 2: %+v", d)
	}
}

func TestTrustManufacturer(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st := openStore(t)
	res := mustTrust(t, st, f.acmeTrust)
	want := TrustResult{Name: "acme", Roots: 1, Intermediates: 1, ManifestKeys: []string{f.acmeKey.Public().KeyID()}}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("first trust: %+v, want %+v", res, want)
	}
	mustImport(t, st, f.acmeRev2)

	// Trusting again replaces the keys and keeps what imports recorded.
	later := now.Add(time.Hour)
	res, err := TrustManufacturer(ctx, st, f.acmeTrust, "operator:bob", later)
	if err != nil {
		t.Fatal(err)
	}
	want.Replaced = true
	if !reflect.DeepEqual(res, want) {
		t.Errorf("second trust: %+v, want %+v", res, want)
	}
	s := take(t, st)
	m := s.manufacturer(t, "acme")
	if m.ManifestRevision != 2 || m.Devices != 7 || !m.TrustedAt.Equal(later) || len(m.ManifestKeys) != 1 {
		t.Errorf("manufacturer after re-trust: %+v", m)
	}
	if e := s.lastAudit; e.Action != "trust-manufacturer" || e.Actor != "operator:bob" {
		t.Errorf("last audit entry %+v", e)
	}
	// The revision recorded before the re-trust still refuses older manifests.
	_, err = ImportManifest(ctx, st, f.acmeRev1, "operator:test", now)
	checkErr(t, err, ErrStaleRevision)
}
