package transfer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

var now = time.Date(2026, 12, 1, 9, 30, 0, 0, time.UTC)

// Device serials of the fixture. keyed is sold to alpha by key, named to
// alpha by name only; other belongs to someone else.
const (
	keyedSerial = "ACME-000001"
	namedSerial = "ACME-000002"
	otherSerial = "ACME-000003"
)

var (
	keyedID = device.ID("acme", keyedSerial)
	namedID = device.ID("acme", namedSerial)
	otherID = device.ID("acme", otherSerial)
)

// idevKey returns a made-up IDevID key fingerprint for a serial.
func idevKey(serial string) string {
	sum := sha256.Sum256([]byte(serial))
	return hex.EncodeToString(sum[:])
}

func newOwner(t testing.TB, name string) *owner.Identity {
	t.Helper()
	k, err := hybridsig.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &owner.Identity{Name: name, Key: k}
}

// owners of the tests: alpha sells to beta, beta to gamma; mallory owns
// nothing but has a key.
type owners struct {
	alpha, beta, gamma, mallory *owner.Identity
}

func newOwners(t testing.TB) *owners {
	t.Helper()
	return &owners{
		alpha: newOwner(t, "alpha"), beta: newOwner(t, "beta"),
		gamma: newOwner(t, "gamma"), mallory: newOwner(t, "mallory"),
	}
}

// newRegistry returns a store holding the fixture's devices as a manifest
// from acme would leave them: keyed and named owned by alpha, other by
// someone else, all expected.
func newRegistry(t testing.TB, o *owners) *bolt.DB {
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
	devs := []device.Device{
		{ID: keyedID, Provenance: prov(keyedSerial, "alpha", o.alpha.KeyID())},
		{ID: namedID, Provenance: prov(namedSerial, "alpha", "")},
		{ID: otherID, Provenance: prov(otherSerial, "someone-else", "")},
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for i := range devs {
			devs[i].State, devs[i].UpdatedAt, devs[i].Cause = device.Expected, now, "manifest"
			if err := tx.PutDevice(&devs[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func prov(serial, ownerName, ownerKey string) device.Provenance {
	return device.Provenance{Manufacturer: "acme", Serial: serial, IDevIDKeySHA256: idevKey(serial),
		Model: "sensor-x", Owner: ownerName, OwnerKey: ownerKey, ManifestRevision: 1}
}

// enroll gives a device of st certificates as if it had onboarded: an
// enrollment superseded by a lost answer, the current one in use and a
// renewal issued. It returns the usable serials.
func enroll(t testing.TB, st store.Store, id string) []string {
	t.Helper()
	certs := []device.Certificate{
		{Serial: "0a01", Kind: device.KindEnroll, Status: device.CertSuperseded},
		{Serial: "0a02", Kind: device.KindEnroll, Status: device.CertInUse},
		{Serial: "0a03", Kind: device.KindRenew, Status: device.CertIssued, Predecessor: "0a02"},
	}
	err := st.Update(context.Background(), func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		for _, c := range certs {
			c.Serial = c.Serial + strings.ToLower(id[len(id)-2:])
			c.DeviceID, c.KeySHA256 = id, idevKey(c.Serial)
			c.NotBefore, c.NotAfter = now.Add(-time.Hour), now.Add(24*time.Hour)
			if err := tx.PutCertificate(c); err != nil {
				return err
			}
			d.Previous, d.Current = d.Current, c.Serial
		}
		d.State, d.Zone = device.Onboarded, "production"
		return tx.PutDevice(&d)
	})
	if err != nil {
		t.Fatal(err)
	}
	sfx := strings.ToLower(id[len(id)-2:])
	return []string{"0a02" + sfx, "0a03" + sfx}
}

func setState(t testing.TB, st store.Store, id string, s device.State) {
	t.Helper()
	err := st.Update(context.Background(), func(tx store.Tx) error {
		d, err := tx.Device(id)
		if err != nil {
			return err
		}
		d.State = s
		return tx.PutDevice(&d)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func getDevice(t testing.TB, st store.Store, id string) (device.Device, []device.Certificate) {
	t.Helper()
	var d device.Device
	var certs []device.Certificate
	err := st.View(context.Background(), func(r store.Reader) error {
		var err error
		if d, err = r.Device(id); err != nil {
			return err
		}
		certs, err = r.CertificatesOf(id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return d, certs
}

func lastAudit(t testing.TB, st store.Store) audit.Entry {
	t.Helper()
	var e audit.Entry
	if err := st.View(context.Background(), func(r store.Reader) error {
		var err error
		e, err = r.LastAudit()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return e
}

// snapshot is everything a refused operation must leave as it was.
type snapshot struct {
	Devices []device.Device
	Certs   []device.Certificate
	Records map[string]string
	Audit   uint64
}

func snap(t testing.TB, st store.Store) snapshot {
	t.Helper()
	s := snapshot{Records: map[string]string{}}
	err := st.View(context.Background(), func(r store.Reader) error {
		if err := r.Devices("", func(d device.Device) (bool, error) {
			s.Devices = append(s.Devices, d)
			certs, err := r.CertificatesOf(d.ID)
			s.Certs = append(s.Certs, certs...)
			return true, err
		}); err != nil {
			return err
		}
		if err := r.Records(RecordKind, "", func(k string, v []byte) (bool, error) {
			s.Records[k] = string(v)
			return true, nil
		}); err != nil {
			return err
		}
		last, err := r.LastAudit()
		s.Audit = last.Seq
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s snapshot) mustEqual(t testing.TB, after snapshot) {
	t.Helper()
	if !reflect.DeepEqual(s, after) {
		a, _ := json.MarshalIndent(s, "", " ")
		b, _ := json.MarshalIndent(after, "", " ")
		t.Fatalf("registry changed:\nbefore %s\nafter %s", a, b)
	}
}

// record returns a valid record of the fixture's device serial, from
// owner from (its name and key) to owner to.
func record(serial string, seq uint32, from, to *owner.Identity) *Record {
	return &Record{Manufacturer: "acme", Serial: serial, IDevIDKeySHA256: idevKey(serial), Seq: seq,
		From:    From{Name: from.Name, Key: from.Key.Public().Bytes()},
		To:      To{Name: to.Name, KeyID: to.KeyID()},
		Created: now}
}

func mustSign(t testing.TB, r *Record, key *hybridsig.PrivateKey) []byte {
	t.Helper()
	env, err := Sign(r, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// signRaw signs any payload as a transfer envelope, bypassing validation.
func signRaw(t testing.TB, payloadType string, payload any, key *hybridsig.PrivateKey) []byte {
	t.Helper()
	b, ok := payload.([]byte)
	if !ok {
		var err error
		if b, err = json.Marshal(payload); err != nil {
			t.Fatal(err)
		}
	}
	env, err := manifest.SignEnvelope(payloadType, b, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// mapEnvelope decodes an envelope, lets f change it and encodes it again.
func mapEnvelope(t testing.TB, env []byte, f func(*manifest.Envelope)) []byte {
	t.Helper()
	var e manifest.Envelope
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatal(err)
	}
	f(&e)
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func chainFile(t testing.TB, envs ...[]byte) []byte {
	t.Helper()
	b, err := EncodeFile(envs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
