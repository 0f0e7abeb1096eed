package cabackup

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	circlhpke "github.com/cloudflare/circl/hpke"

	"github.com/embark-iot/embark/pki"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func newCA(t testing.TB) (string, *pki.CA) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := pki.Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, ca
}

func mustGenerate(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSeal(t testing.TB, caDir string, to *PublicKey) []byte {
	t.Helper()
	c, err := ReadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Seal(c, to, t0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// issue has ca issue an LDevID and checks that it chains to root.
func issueChainsTo(t *testing.T, ca *pki.CA, root *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueLDevID(pki.LDevIDRequest{PublicKey: &key.PublicKey, DeviceID: "urn:dev:embark:acme:ACME-000001", Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	inters.AddCert(ca.Intermediate())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("certificate of the restored CA does not chain to the original root: %v", err)
	}
}

// entries lists what is in dir (nothing if dir does not exist).
func entries(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func TestRestore(t *testing.T) {
	caDir, orig := newCA(t)
	k := mustGenerate(t)
	backup := mustSeal(t, caDir, k.Public())

	for _, offlineRoot := range []bool{false, true} {
		name := "ok/with root key"
		if offlineRoot {
			name = "ok/root kept offline"
		}
		t.Run(name, func(t *testing.T) {
			b := backup
			if offlineRoot {
				dir := filepath.Join(t.TempDir(), "ca")
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				for _, f := range []string{pki.RootCertFile, pki.IntermediateCertFile, pki.IntermediateKeyFile} {
					data, _ := os.ReadFile(filepath.Join(caDir, f))
					if err := os.WriteFile(filepath.Join(dir, f), data, 0o600); err != nil {
						t.Fatal(err)
					}
				}
				b = mustSeal(t, dir, k.Public())
			}
			dest := filepath.Join(t.TempDir(), "data", "ca")
			c, err := Restore(b, k, dest)
			if err != nil {
				t.Fatal(err)
			}
			if c.RootSHA256 != fingerprint(orig.Root()) || !c.Created.Equal(t0) {
				t.Fatalf("contents: root %s created %v", c.RootSHA256, c.Created)
			}
			restored, err := pki.Load(dest)
			if err != nil {
				t.Fatal(err)
			}
			issueChainsTo(t, restored, orig.Root())
			if !restored.Root().Equal(orig.Root()) || !restored.Intermediate().Equal(orig.Intermediate()) {
				t.Fatal("restored CA has other certificates")
			}
			_, err = os.Stat(filepath.Join(dest, pki.RootKeyFile))
			if offlineRoot != errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("root key: %v", err)
			}
			st, err := os.Stat(filepath.Join(dest, pki.IntermediateKeyFile))
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("intermediate key mode: %v %v", st, err)
			}
			st, err = os.Stat(dest)
			if err != nil || st.Mode().Perm() != 0o700 {
				t.Fatalf("CA directory mode: %v %v", st, err)
			}
		})
	}

	t.Run("fail/existing CA files are kept", func(t *testing.T) {
		_, err := Restore(backup, k, caDir)
		if !errors.Is(err, ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
		if ca, err := pki.Load(caDir); err != nil || !ca.Root().Equal(orig.Root()) {
			t.Fatalf("CA changed: %v", err)
		}
	})
	t.Run("fail/an intermediate key in the way", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "ca")
		if err := os.MkdirAll(dest, 0o700); err != nil {
			t.Fatal(err)
		}
		other := []byte("another key\n")
		if err := os.WriteFile(filepath.Join(dest, pki.IntermediateKeyFile), other, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Restore(backup, k, dest); !errors.Is(err, ErrExists) {
			t.Fatalf("err = %v, want ErrExists", err)
		}
		if got, _ := os.ReadFile(filepath.Join(dest, pki.IntermediateKeyFile)); !bytes.Equal(got, other) {
			t.Fatal("existing key overwritten")
		}
		if n := len(entries(t, dest)); n != 2 {
			t.Fatalf("%d entries in the CA directory, want the directory and the key", n)
		}
	})
}

// TestOpenRefused: a wrong key or any changed byte fails with the exact
// error, and Restore writes nothing.
func TestOpenRefused(t *testing.T) {
	caDir, _ := newCA(t)
	k, other := mustGenerate(t), mustGenerate(t)
	backup := mustSeal(t, caDir, k.Public())
	h, err := ParseHeader(backup)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.enc) != 1120 {
		t.Fatalf("X-Wing enc of %d bytes", len(h.enc))
	}
	encAt := fixedHeader
	ctAt := len(h.aad)
	flip := func(i int) []byte { b := bytes.Clone(backup); b[i] ^= 0x01; return b }
	readdressed := bytes.Clone(backup)
	copy(readdressed[23:55], other.Public().id)

	tests := []struct {
		name string
		in   []byte
		key  *PrivateKey
		want error
	}{
		{"fail/wrong key", backup, other, ErrWrongKey},
		{"fail/re-addressed to the key used", readdressed, other, ErrOpen},
		{"fail/magic", flip(0), k, ErrMalformed},
		{"fail/version", flip(16), k, ErrUnsupported},
		{"fail/KEM id", flip(18), k, ErrUnsupported},
		{"fail/KDF id", flip(20), k, ErrUnsupported},
		{"fail/AEAD id", flip(22), k, ErrUnsupported},
		{"fail/recipient id", flip(40), k, ErrWrongKey},
		{"fail/enc length", flip(56), k, ErrMalformed},
		{"fail/enc first byte", flip(encAt), k, ErrOpen},
		{"fail/enc last byte", flip(ctAt - 5), k, ErrOpen},
		{"fail/ciphertext length", flip(ctAt - 1), k, ErrMalformed},
		{"fail/ciphertext first byte", flip(ctAt), k, ErrOpen},
		{"fail/ciphertext middle byte", flip((ctAt + len(backup)) / 2), k, ErrOpen},
		{"fail/tag last byte", flip(len(backup) - 1), k, ErrOpen},
		{"fail/truncated", backup[:len(backup)-1], k, ErrMalformed},
		{"fail/byte appended", append(bytes.Clone(backup), 0), k, ErrMalformed},
		{"fail/empty", nil, k, ErrMalformed},
		{"fail/too large", make([]byte, MaxSize+1), k, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			_, err := Restore(tt.in, tt.key, filepath.Join(data, "ca"))
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if got := entries(t, data); len(got) != 0 {
				t.Fatalf("wrote %v", got)
			}
		})
	}

	// Every byte position: never opened, never written.
	data := filepath.Join(t.TempDir(), "data")
	for i := 0; i < len(backup); i += 5 {
		if _, err := Restore(flip(i), k, filepath.Join(data, "ca")); err == nil {
			t.Fatalf("byte %d flipped: opened", i)
		}
	}
	if got := entries(t, data); len(got) != 0 {
		t.Fatalf("wrote %v", got)
	}
	if _, err := Open(backup, k); err != nil {
		t.Fatalf("the original no longer opens: %v", err)
	}
}

// TestSealRefusesBrokenCA: a CA directory that is not a CA is not sealed.
func TestSealRefusesBrokenCA(t *testing.T) {
	caDir, _ := newCA(t)
	_, other := newCA(t)
	tests := []struct {
		name   string
		change func(dir string)
		want   string
	}{
		{"fail/intermediate key missing", func(dir string) { os.Remove(filepath.Join(dir, pki.IntermediateKeyFile)) }, "no such file"},
		{"fail/intermediate key of another CA", func(dir string) {
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			der, _ := x509.MarshalPKCS8PrivateKey(key)
			os.WriteFile(filepath.Join(dir, pki.IntermediateKeyFile), pemBlock("PRIVATE KEY", der), 0o600)
		}, "does not belong"},
		{"fail/intermediate of another root", func(dir string) {
			os.WriteFile(filepath.Join(dir, pki.IntermediateCertFile), pemBlock("CERTIFICATE", other.Intermediate().Raw), 0o644)
		}, "not signed by"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ca")
			if err := os.CopyFS(dir, os.DirFS(caDir)); err != nil {
				t.Fatal(err)
			}
			tt.change(dir)
			if _, err := ReadCA(dir); err == nil || !bytes.Contains([]byte(err.Error()), []byte(tt.want)) {
				t.Fatalf("ReadCA = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestInteropCircl: a backup sealed with circl's HPKE (X-Wing) opens here.
func TestInteropCircl(t *testing.T) {
	caDir, orig := newCA(t)
	k := mustGenerate(t)
	c, err := ReadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(orig.Root().Raw)
	p := payload{Created: t0.Unix(), Root: sum[:]}
	for _, name := range Files {
		if b, ok := c.Files[name]; ok {
			p.Files = append(p.Files, payloadFile{Name: name, Data: b})
		}
	}
	plain, err := encMode.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	suite := circlhpke.NewSuite(circlhpke.KEM_XWING, circlhpke.KDF_HKDF_SHA256, circlhpke.AEAD_AES256GCM)
	pub, err := circlhpke.KEM_XWING.Scheme().UnmarshalBinaryPublicKey(k.Public().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	sender, err := suite.NewSender(pub, []byte(Info))
	if err != nil {
		t.Fatal(err)
	}
	enc, sealer, err := sender.Setup(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hdr := append([]byte(Magic), Version)
	hdr = binary.BigEndian.AppendUint16(hdr, KEMID)
	hdr = binary.BigEndian.AppendUint16(hdr, KDFID)
	hdr = binary.BigEndian.AppendUint16(hdr, AEADID)
	hdr = append(hdr, k.Public().id...)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(enc)))
	hdr = append(hdr, enc...)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(plain)+16))
	ct, err := sealer.Seal(plain, hdr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Open(append(hdr, ct...), k)
	if err != nil {
		t.Fatalf("circl-sealed backup: %v", err)
	}
	if got.RootSHA256 != fingerprint(orig.Root()) {
		t.Fatal("other root")
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// A CA that rolled over (a new intermediate, then a new root) is backed up
// whole: the restored CA has the same active intermediate and issues under
// it, and still verifies what the first generation issued.
func TestRestoreAfterRollover(t *testing.T) {
	caDir, orig := newCA(t)
	firstKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	early, err := orig.IssueLDevID(pki.LDevIDRequest{PublicKey: &firstKey.PublicKey, DeviceID: "urn:dev:embark:acme:EARLY", Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := orig.Rollover(pki.RolloverOptions{}); err != nil {
		t.Fatal(err)
	}
	active, err := orig.Rollover(pki.RolloverOptions{NewRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	k := mustGenerate(t)
	backup := mustSeal(t, caDir, k.Public())
	dest := filepath.Join(t.TempDir(), "data", "ca")
	if _, err := Restore(backup, k, dest); err != nil {
		t.Fatal(err)
	}
	restored, err := pki.Load(dest)
	if err != nil {
		t.Fatal(err)
	}
	if got := restored.ActiveIssuer(); got.ID != active.ID || len(restored.Issuers()) != 3 {
		t.Fatalf("restored active issuer %s of %d, want %s of 3", got.ID, len(restored.Issuers()), active.ID)
	}
	if err := restored.VerifyLDevID(early, t0.Add(time.Hour)); err != nil && !errors.Is(err, pki.ErrExpired) && !errors.Is(err, pki.ErrNotYetValid) {
		t.Fatalf("a first-generation LDevID after restore: %v", err)
	}
	if !restored.IssuedHere(early) {
		t.Fatal("the restored CA does not know the first generation")
	}
	// A second restore into the same place is refused and changes nothing.
	if _, err := Restore(backup, k, dest); !errors.Is(err, ErrExists) {
		t.Fatalf("restore over a restored CA: %v, want ErrExists", err)
	}
}
