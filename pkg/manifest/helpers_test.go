package manifest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

var issued = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// fakeKey returns a deterministic fingerprint-shaped value for serial.
func fakeKey(serial string) string {
	sum := sha256.Sum256([]byte("key of " + serial))
	return hex.EncodeToString(sum[:])
}

func entry(serial string) Entry {
	return Entry{
		Serial:          serial,
		IDevIDKeySHA256: fakeKey(serial),
		Model:           "sensor-x",
		HardwareRev:     "B",
		FirmwareVersion: "1.4.2",
		FirmwareSHA256:  fakeKey("firmware"),
		SBOMRef:         "urn:embark:sbom:acme:sensor-x:1.4.2",
		SBOMSHA256:      fakeKey("sbom"),
		ManufacturedAt:  time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Site:            "plant-1",
		Owner:           "example-operator",
	}
}

func testManifest(n int) *Manifest {
	m := &Manifest{Manufacturer: "acme", Revision: 1, IssuedAt: issued}
	for i := 1; i <= n; i++ {
		m.Devices = append(m.Devices, entry(fmt.Sprintf("ACME-%06d", i)))
	}
	return m
}

var (
	keysOnce sync.Once
	keyA     *hybridsig.PrivateKey
	keyB     *hybridsig.PrivateKey
)

// testKeys returns two signing keys shared by the tests of this package.
func testKeys(t testing.TB) (a, b *hybridsig.PrivateKey) {
	t.Helper()
	keysOnce.Do(func() {
		var err error
		if keyA, err = hybridsig.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
		if keyB, err = hybridsig.GenerateKey(rand.Reader); err != nil {
			panic(err)
		}
	})
	return keyA, keyB
}

func lookupOf(keys ...*hybridsig.PublicKey) KeyLookup {
	return func(id string) (*hybridsig.PublicKey, bool) {
		for _, k := range keys {
			if k.KeyID() == id {
				return k, true
			}
		}
		return nil, false
	}
}

// signRaw signs any payload bytes as a manifest, without validation.
func signRaw(t testing.TB, payloadType string, payload []byte, key *hybridsig.PrivateKey) []byte {
	t.Helper()
	env, err := SignEnvelope(payloadType, payload, key)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeEnvelope(t testing.TB, b []byte) Envelope {
	t.Helper()
	var e Envelope
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatal(err)
	}
	return e
}

// testCA returns a self-signed CA (or, with parent, one issued by parent).
func testCA(t testing.TB, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             issued.Add(-time.Hour),
		NotAfter:              issued.AddDate(10, 0, 0),
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	if !isCA {
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}
