package provenance

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"testing"
	"testing/iotest"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
)

// bigVariant returns revision rev of acme's manifest with n more devices,
// large enough that its payload streams through a temporary file.
func (f *fixture) bigVariant(rev uint64, n int) *manifest.Manifest {
	m := f.variant(rev)
	for i := range n {
		serial := fmt.Sprintf("ACME-%06d", 1000+i)
		m.Devices = append(m.Devices, manifest.Entry{Serial: serial, IDevIDKeySHA256: fingerprint(serial),
			Model: "sensor-x", Owner: "example-operator", Site: "plant-2"})
	}
	return m
}

// envelopeOf writes payload and signatures in the given member order.
func envelopeOf(t testing.TB, payload []byte, sigs []manifest.Signature, signaturesFirst bool) []byte {
	t.Helper()
	s, err := json.Marshal(sigs)
	if err != nil {
		t.Fatal(err)
	}
	typ := `"payloadType":"` + manifest.PayloadType + `"`
	p := `"payload":"` + base64.StdEncoding.EncodeToString(payload) + `"`
	if signaturesFirst {
		return []byte(`{"signatures":` + string(s) + `,` + p + `,` + typ + `}`)
	}
	return []byte(`{` + typ + `,` + p + `,"signatures":` + string(s) + `}`)
}

func signatures(t testing.TB, payload []byte, keys ...*hybridsig.PrivateKey) []manifest.Signature {
	t.Helper()
	var out []manifest.Signature
	for _, k := range keys {
		sig, err := k.Sign(rand.Reader, manifest.PAE(manifest.PayloadType, payload))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, manifest.Signature{KeyID: k.Public().KeyID(), Sig: sig})
	}
	return out
}

// manifestErrors are the errors of package manifest and hybridsig that a
// refusal by Open may match.
var manifestErrors = []error{manifest.ErrMalformed, manifest.ErrPayloadType, manifest.ErrUnknownSigner,
	manifest.ErrSignature, manifest.ErrInvalid, manifest.ErrDuplicate, manifest.ErrTooLarge,
	hybridsig.ErrECDSA, hybridsig.ErrMLDSA, hybridsig.ErrMalformed}

// The streaming import refuses what manifest.Open refuses, with the same
// errors and nothing changed, whichever way the envelope is read, and
// accepts the payload before or after the signatures.
func TestImportFromMatchesOpen(t *testing.T) {
	f := newFixture(t)
	acmeID := f.acmeKey.Public().KeyID()
	big := f.bigVariant(3, 300)
	payload, err := json.Marshal(big)
	if err != nil {
		t.Fatal(err)
	}
	marshal := func(m *manifest.Manifest) []byte {
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mutated := func(mutate func(m *manifest.Manifest)) []byte {
		m := f.bigVariant(3, 300)
		mutate(m)
		return marshal(m)
	}
	good := envelopeOf(t, payload, signatures(t, payload, f.acmeKey), false)
	dupSerial := mutated(func(m *manifest.Manifest) { m.Devices[len(m.Devices)-1].Serial = m.Devices[0].Serial })
	dupKey := mutated(func(m *manifest.Manifest) {
		m.Devices[len(m.Devices)-1].IDevIDKeySHA256 = m.Devices[9].IDevIDKeySHA256
	})
	badEntry := mutated(func(m *manifest.Manifest) { m.Devices[len(m.Devices)-1].FirmwareSHA256 = "not hex" })
	spliced := func(mlKey, ecKey *hybridsig.PrivateKey) []manifest.Signature {
		ml, ec := signatures(t, payload, mlKey)[0].Sig, signatures(t, payload, ecKey)[0].Sig
		n := hybridsig.MLDSASignatureSize
		return []manifest.Signature{{KeyID: acmeID, Sig: append(bytes.Clone(ml[:n]), ec[n:]...)}}
	}

	tests := []struct {
		name string
		env  []byte
		opts []manifest.OpenOption
		// want lists the errors beyond those of Open.
		want []error
		// accepted: the import goes through.
		accepted bool
	}{
		{name: "ok/payload before signatures", env: good, accepted: true},
		{name: "ok/signatures before payload", env: envelopeOf(t, payload, signatures(t, payload, f.acmeKey), true), accepted: true},
		{name: "fail/bad ECDSA half", env: envelopeOf(t, payload, spliced(f.acmeKey, f.otherKey), false)},
		{name: "fail/bad ML-DSA half", env: envelopeOf(t, payload, spliced(f.otherKey, f.acmeKey), false)},
		{name: "fail/bad ML-DSA half, signatures first", env: envelopeOf(t, payload, spliced(f.otherKey, f.acmeKey), true)},
		{name: "fail/unknown signer", env: envelopeOf(t, payload, signatures(t, payload, f.otherKey), false)},
		{name: "fail/duplicate serial", env: envelopeOf(t, dupSerial, signatures(t, dupSerial, f.acmeKey), false)},
		{name: "fail/duplicate key", env: envelopeOf(t, dupKey, signatures(t, dupKey, f.acmeKey), true)},
		{name: "fail/invalid last entry", env: envelopeOf(t, badEntry, signatures(t, badEntry, f.acmeKey), false)},
		{name: "fail/malformed envelope", env: good[:len(good)-2]},
		{name: "fail/malformed payload", env: envelopeOf(t, payload[:len(payload)-1], signatures(t, payload[:len(payload)-1], f.acmeKey), false)},
		{name: "fail/oversized", env: good, opts: []manifest.OpenOption{manifest.WithMaxSize(len(good) - 1)}},
		{name: "fail/signed by beta", env: envelopeOf(t, payload, signatures(t, payload, f.betaKey), false),
			want: []error{ErrUntrustedManufacturer}},
		{name: "fail/signed by acme and beta", env: envelopeOf(t, payload, signatures(t, payload, f.acmeKey, f.betaKey), true),
			want: []error{ErrUntrustedManufacturer}},
	}
	readers := map[string]func([]byte) io.Reader{
		"whole":    func(b []byte) io.Reader { return bytes.NewReader(b) },
		"one byte": func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) },
	}
	for _, tt := range tests {
		for rname, reader := range readers {
			t.Run(tt.name+"/"+rname, func(t *testing.T) {
				ctx := context.Background()
				st := openStore(t)
				mustTrust(t, st, f.acmeTrust)
				mustTrust(t, st, f.betaTrust)
				mustImport(t, st, f.acmeRev2)
				before := take(t, st)
				dir := t.TempDir()
				res, err := ImportManifestFrom(ctx, st, reader(tt.env), "operator:test", now,
					append([]manifest.OpenOption{manifest.WithTempDir(dir)}, tt.opts...)...)
				if ents, _ := os.ReadDir(dir); len(ents) != 0 {
					t.Errorf("temporary files left: %v", ents)
				}
				after := take(t, st)
				if tt.accepted {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					want := ImportResult{Manufacturer: "acme", Revision: 3, Devices: 307, New: 300, Updated: 7, SignerKey: acmeID}
					if res != want {
						t.Errorf("result %+v, want %+v", res, want)
					}
					checkImported(t, after, big, acmeID)
					return
				}
				t.Logf("refused: %v", err)
				_, errOpen := manifest.Open(tt.env, func(id string) (*hybridsig.PublicKey, bool) {
					for _, k := range []*hybridsig.PrivateKey{f.acmeKey, f.betaKey} {
						if k.Public().KeyID() == id {
							return k.Public(), true
						}
					}
					return nil, false
				}, tt.opts...)
				var want []error
				for _, s := range manifestErrors {
					if errors.Is(errOpen, s) {
						want = append(want, s)
					}
				}
				want = append(want, tt.want...)
				if len(want) == 0 {
					t.Fatalf("Open accepted the envelope: the case tests nothing")
				}
				checkErr(t, err, want...)
				if !reflect.DeepEqual(before, after) {
					t.Errorf("the registry changed:\nbefore %+v\nafter  %+v", before, after)
				}
			})
		}
	}
}

// checkImported checks that the registry holds m's devices as m lists them.
func checkImported(t *testing.T, s snapshot, m *manifest.Manifest, signer string) {
	t.Helper()
	if len(s.devices) != len(m.Devices) {
		t.Fatalf("%d devices, want %d", len(s.devices), len(m.Devices))
	}
	for _, e := range m.Devices {
		d := s.device(t, e.Serial)
		p := d.Provenance
		if d.ID != device.ID(m.Manufacturer, e.Serial) || p.IDevIDKeySHA256 != e.IDevIDKeySHA256 || p.Model != e.Model ||
			p.Site != e.Site || p.Owner != e.Owner || p.ManifestRevision != m.Revision || p.ManifestKey != ShortKeyID(signer) {
			t.Errorf("device %s: %+v, entry %+v", d.ID, p, e)
		}
	}
	if mf := s.manufacturer(t, m.Manufacturer); mf.ManifestRevision != m.Revision || mf.Devices != uint64(len(m.Devices)) {
		t.Errorf("manufacturer %+v", mf)
	}
}

// A distrusted manufacturer's manifests are refused.
func TestImportDistrusted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	st := openStore(t)
	mustTrust(t, st, f.acmeTrust)
	mustImport(t, st, f.acmeRev1)
	if _, err := DistrustManufacturer(ctx, st, "acme", "recalled", "operator:test", now); err != nil {
		t.Fatal(err)
	}
	before := take(t, st)
	_, err := ImportManifest(ctx, st, f.acmeRev2, "operator:test", now)
	checkErr(t, err, ErrUntrustedManufacturer)
	if after := take(t, st); !reflect.DeepEqual(before, after) {
		t.Errorf("the registry changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// A cancelled context stops an import with nothing changed.
func TestImportCancelled(t *testing.T) {
	f := newFixture(t)
	st := openStore(t)
	mustTrust(t, st, f.acmeTrust)
	before := take(t, st)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := ImportManifestFrom(ctx, st, bytes.NewReader(f.acmeRev2), "operator:test", now)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if after := take(t, st); !reflect.DeepEqual(before, after) {
		t.Errorf("the registry changed:\nbefore %+v\nafter  %+v", before, after)
	}
}

// Imports record which key signed the manifest each device came from.
func TestImportRecordsManifestKey(t *testing.T) {
	f := newFixture(t)
	st := openStore(t)
	mustTrust(t, st, f.acmeTrust)
	mustImport(t, st, f.acmeRev2)
	checkImported(t, take(t, st), f.rev2, f.acmeKey.Public().KeyID())
}
