package factory

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
)

var testNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return testNow }

func mustRun(t *testing.T, o Options) *Result {
	t.Helper()
	if o.Clock == nil {
		o.Clock = fixedClock
	}
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return res
}

// openOutput checks the trust bundle and opens the manifest with it.
func openOutput(t *testing.T, dir string) (*manifest.Trust, *manifest.Manifest) {
	t.Helper()
	tb, err := os.ReadFile(filepath.Join(dir, TrustFile))
	if err != nil {
		t.Fatal(err)
	}
	trust, err := manifest.ParseTrustBundle(tb)
	if err != nil {
		t.Fatalf("trust.json: %v", err)
	}
	env, err := os.ReadFile(filepath.Join(dir, ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := trust.Open(env)
	if err != nil {
		t.Fatalf("manifest.json does not open with the trust bundle: %v", err)
	}
	return trust, m
}

func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	var progress []int
	res := mustRun(t, Options{Out: dir, Count: 20, ExpiredIDevIDs: 3, Workers: 3,
		Progress: func(done, total int) {
			if total != 20 {
				t.Errorf("progress total %d", total)
			}
			progress = append(progress, done)
		}})
	want := &Result{Dir: dir, Manufacturer: "acme", Devices: 20, Total: 20, FirstSerial: "ACME-000001",
		LastSerial: "ACME-000020", Revision: 1, ManifestKeyID: res.ManifestKeyID}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("Result = %+v\nwant %+v", res, want)
	}
	if len(progress) != 20 || progress[0] != 1 || progress[19] != 20 {
		t.Fatalf("progress calls %v", progress)
	}

	t.Run("ok/file modes", func(t *testing.T) {
		modes := map[string]fs.FileMode{
			".": 0o700 | fs.ModeDir, RootCertFile: 0o644, RootKeyFile: 0o600, IntermediateCertFile: 0o644,
			IntermediateKeyFile: 0o600, SignerKeyFile: 0o600, SignerPubFile: 0o644, TrustFile: 0o644,
			ManifestFile: 0o644, DevicesFile: 0o600, VoucherCertFile: 0o644, VoucherKeyFile: 0o600, FirmwareFile: 0o644,
		}
		for name, mode := range modes {
			fi, err := os.Stat(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != mode {
				t.Errorf("%s: mode %v, want %v", name, fi.Mode(), mode)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != len(modes)-1 {
			t.Errorf("%d files in the output directory, want %d (temporary files left?)", len(entries), len(modes)-1)
		}
	})

	trust, m := openOutput(t, dir)
	devices, err := ReadDevices(filepath.Join(dir, DevicesFile))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ok/manifest verifies with the trust bundle key", func(t *testing.T) {
		if trust.Name != "acme" || len(trust.ManifestKeys) != 1 || trust.ManifestKeys[0].KeyID() != res.ManifestKeyID {
			t.Fatalf("trust %+v", trust)
		}
		pubPEM, err := os.ReadFile(filepath.Join(dir, SignerPubFile))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := hybridsig.ParsePublicKeyPEM(pubPEM)
		if err != nil || !pub.Equal(trust.ManifestKeys[0]) {
			t.Fatalf("manifest-signer.pub is not the trust bundle's key: %v", err)
		}
		if m.Manufacturer != "acme" || m.Revision != 1 || !m.IssuedAt.Equal(testNow) || len(m.Devices) != 20 {
			t.Fatalf("manifest %s rev %d issued %v with %d devices", m.Manufacturer, m.Revision, m.IssuedAt, len(m.Devices))
		}
		e := m.Devices[0]
		if e.Model != "sensor-x" || e.HardwareRev != "B" || e.FirmwareVersion != "1.4.2" || e.Owner != "example-operator" ||
			e.Site != "plant-1" || e.FirmwareSHA256 == "" || e.SBOMRef == "" || e.SBOMSHA256 == "" || !e.ManufacturedAt.Equal(testNow) {
			t.Fatalf("entry %+v", e)
		}
	})

	t.Run("ok/each device key fingerprint is in the manifest", func(t *testing.T) {
		if len(devices) != len(m.Devices) {
			t.Fatalf("%d devices, manifest lists %d", len(devices), len(m.Devices))
		}
		for i, d := range devices {
			spki, err := x509.MarshalPKIXPublicKey(&d.Key.PublicKey)
			if err != nil {
				t.Fatal(err)
			}
			if d.Serial != fmt.Sprintf("ACME-%06d", i+1) || m.Devices[i].Serial != d.Serial {
				t.Fatalf("device %d is %q, manifest says %q", i, d.Serial, m.Devices[i].Serial)
			}
			if got := manifest.KeyFingerprint(spki); got != m.Devices[i].IDevIDKeySHA256 {
				t.Fatalf("%s: key fingerprint %s, manifest %s", d.Serial, got, m.Devices[i].IDevIDKeySHA256)
			}
			if manifest.KeyFingerprint(d.Chain[0].RawSubjectPublicKeyInfo) != m.Devices[i].IDevIDKeySHA256 {
				t.Fatalf("%s: IDevID key is not the manifest's", d.Serial)
			}
		}
	})

	t.Run("ok/IDevID chains to the root", func(t *testing.T) {
		roots := x509.NewCertPool()
		for _, c := range trust.Roots {
			roots.AddCert(c)
		}
		serials := map[string]bool{}
		for _, d := range devices[:17] {
			leaf := d.Chain[0]
			if len(d.Chain) != 2 || !d.Chain[1].Equal(trust.Intermediates[0]) {
				t.Fatalf("%s: chain of %d certificates", d.Serial, len(d.Chain))
			}
			// The device's own chain, with its intermediate as untrusted.
			pool := x509.NewCertPool()
			pool.AddCert(d.Chain[1])
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: testNow,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("%s: %v", d.Serial, err)
			}
			if leaf.Subject.CommonName != d.Serial || leaf.Subject.SerialNumber != d.Serial ||
				!reflect.DeepEqual(leaf.Subject.Organization, []string{"acme"}) {
				t.Fatalf("%s: subject %v", d.Serial, leaf.Subject)
			}
			if leaf.KeyUsage != x509.KeyUsageDigitalSignature || !reflect.DeepEqual(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || leaf.IsCA {
				t.Fatalf("%s: key usage %v %v, CA %v", d.Serial, leaf.KeyUsage, leaf.ExtKeyUsage, leaf.IsCA)
			}
			if !leaf.NotAfter.Equal(noExpiry) || !bytes.Contains(leaf.RawTBSCertificate, []byte("99991231235959Z")) {
				t.Fatalf("%s: notAfter %v", d.Serial, leaf.NotAfter)
			}
			if !leaf.NotBefore.Equal(testNow.Add(-time.Hour)) {
				t.Fatalf("%s: notBefore %v", d.Serial, leaf.NotBefore)
			}
			if n := leaf.SerialNumber.BitLen(); n > 128 || n < 64 || serials[leaf.SerialNumber.String()] {
				t.Fatalf("%s: certificate serial %v (%d bits) not random 128-bit or repeated", d.Serial, leaf.SerialNumber, n)
			}
			serials[leaf.SerialNumber.String()] = true
		}
		root := trust.Roots[0]
		if !root.IsCA || root.NotAfter.Sub(root.NotBefore) < 19*365*24*time.Hour || root.PublicKeyAlgorithm != x509.ECDSA {
			t.Fatalf("root %v valid %v to %v", root.Subject, root.NotBefore, root.NotAfter)
		}
	})

	t.Run("ok/last ExpiredIDevIDs devices have expired IDevIDs", func(t *testing.T) {
		roots := x509.NewCertPool()
		roots.AddCert(trust.Roots[0])
		for i, d := range devices {
			leaf := d.Chain[0]
			expired := i >= 17
			if got := leaf.NotAfter.Before(testNow); got != expired {
				t.Fatalf("%s: expired = %v (notAfter %v), want %v", d.Serial, got, leaf.NotAfter, expired)
			}
			if !expired {
				continue
			}
			if !leaf.NotAfter.Equal(testNow.AddDate(0, 0, -1)) {
				t.Fatalf("%s: notAfter %v, want a day ago", d.Serial, leaf.NotAfter)
			}
			pool := x509.NewCertPool()
			pool.AddCert(d.Chain[1])
			_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: testNow,
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
			var inv x509.CertificateInvalidError
			if !errors.As(err, &inv) || inv.Reason != x509.Expired {
				t.Fatalf("%s: Verify = %v, want expired", d.Serial, err)
			}
		}
	})
}

// snapshot returns the names and contents of the files in dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return out
		}
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestRunReusesCA(t *testing.T) {
	dir := t.TempDir()
	first := mustRun(t, Options{Out: dir, Count: 5})
	before := snapshot(t, dir)
	_, m1 := openOutput(t, dir)

	second := mustRun(t, Options{Out: dir, Count: 3, Model: "sensor-y"})
	after := snapshot(t, dir)
	for _, name := range caFiles {
		if before[name] != after[name] {
			t.Errorf("%s changed on the second run", name)
		}
	}
	if !second.ReusedCA || second.ManifestKeyID != first.ManifestKeyID || second.Revision != 2 ||
		second.Devices != 3 || second.Total != 8 || second.FirstSerial != "ACME-000006" || second.LastSerial != "ACME-000008" {
		t.Fatalf("second run %+v", second)
	}
	_, m2 := openOutput(t, dir)
	if m2.Revision != 2 || len(m2.Devices) != 8 {
		t.Fatalf("manifest rev %d with %d devices", m2.Revision, len(m2.Devices))
	}
	if !reflect.DeepEqual(m2.Devices[:5], m1.Devices) {
		t.Fatal("the second manifest changed the first run's devices")
	}
	if m2.Devices[5].Model != "sensor-y" {
		t.Fatalf("new device model %q", m2.Devices[5].Model)
	}
	if !strings.HasPrefix(after[DevicesFile], before[DevicesFile]) {
		t.Fatal("devices.jsonl lost or changed the first run's devices")
	}
	devices, err := ReadDevices(filepath.Join(dir, DevicesFile))
	if err != nil || len(devices) != 8 {
		t.Fatalf("ReadDevices: %d devices, %v", len(devices), err)
	}
	for i, d := range devices {
		if manifest.KeyFingerprint(d.Chain[0].RawSubjectPublicKeyInfo) != m2.Devices[i].IDevIDKeySHA256 {
			t.Fatalf("%s not in the manifest", d.Serial)
		}
	}

	third := mustRun(t, Options{Out: dir})
	_, m3 := openOutput(t, dir)
	if third.Devices != 0 || third.Total != 8 || third.Revision != 3 || m3.Revision != 3 || !reflect.DeepEqual(m3.Devices, m2.Devices) {
		t.Fatalf("third run %+v, manifest rev %d", third, m3.Revision)
	}
}

func TestRunRefuses(t *testing.T) {
	otherKey, err := hybridsig.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string) // on a directory with 4 devices
		fresh   bool                           // start from an empty directory instead
		opts    Options
		ctx     func() context.Context
		want    error
	}{
		{name: "fail/negative count", fresh: true, opts: Options{Count: -1}, want: ErrOptions},
		{name: "fail/more expired than devices", fresh: true, opts: Options{Count: 2, ExpiredIDevIDs: 3}, want: ErrOptions},
		{name: "fail/bad manufacturer name", fresh: true, opts: Options{Count: 1, Manufacturer: "Acme Inc"}, want: ErrOptions},
		{name: "fail/no devices at all", fresh: true, opts: Options{Count: 0}, want: ErrOptions},
		{name: "fail/serial prefix with slash", fresh: true, opts: Options{Count: 1, SerialPrefix: "A/"}, want: manifest.ErrInvalid},
		{name: "fail/another manufacturer's directory", opts: Options{Count: 1, Manufacturer: "globex"}, want: ErrOptions},
		{name: "fail/revision not above the existing one", opts: Options{Count: 1, Revision: 1}, want: ErrOptions},
		{name: "fail/partial CA", opts: Options{Count: 1}, want: ErrInconsistent,
			prepare: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, RootKeyFile)) }},
		{name: "fail/manifest signed by another key", opts: Options{Count: 1}, want: ErrInconsistent,
			prepare: func(t *testing.T, dir string) {
				env, err := manifest.Sign(&manifest.Manifest{Manufacturer: "acme", Revision: 9, IssuedAt: testNow,
					Devices: []manifest.Entry{{Serial: "X", IDevIDKeySHA256: strings.Repeat("a", 64)}}}, otherKey)
				if err != nil {
					t.Fatal(err)
				}
				write(t, filepath.Join(dir, ManifestFile), env)
			}},
		{name: "fail/devices.jsonl lacks a device", opts: Options{Count: 1}, want: ErrInconsistent,
			prepare: func(t *testing.T, dir string) {
				b, err := os.ReadFile(filepath.Join(dir, DevicesFile))
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.SplitAfter(string(b), "\n")
				write(t, filepath.Join(dir, DevicesFile), []byte(strings.Join(lines[:3], "")))
			}},
		{name: "fail/devices.jsonl missing", opts: Options{Count: 1}, want: ErrInconsistent,
			prepare: func(t *testing.T, dir string) { remove(t, filepath.Join(dir, DevicesFile)) }},
		{name: "fail/manifest without CA", fresh: true, opts: Options{Count: 1}, want: ErrInconsistent,
			prepare: func(t *testing.T, dir string) { write(t, filepath.Join(dir, ManifestFile), []byte("{}")) }},
		{name: "fail/cancelled", opts: Options{Count: 50}, want: context.Canceled,
			ctx: func() context.Context {
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				return ctx
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			if !tt.fresh {
				mustRun(t, Options{Out: dir, Count: 4})
			}
			if tt.prepare != nil {
				if err := os.MkdirAll(dir, 0o700); err != nil {
					t.Fatal(err)
				}
				tt.prepare(t, dir)
			}
			before := snapshot(t, dir)
			ctx := context.Background()
			if tt.ctx != nil {
				ctx = tt.ctx()
			}
			o := tt.opts
			o.Out, o.Clock = dir, fixedClock
			res, err := Run(ctx, o)
			if !errors.Is(err, tt.want) || res != nil {
				t.Fatalf("Run = %+v, %v; want nil, %v", res, err, tt.want)
			}
			if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
				t.Fatalf("the output directory changed: %d files before, %d after", len(before), len(after))
			}
		})
	}
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

func TestReadDevicesMalformed(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, Options{Out: dir, Count: 2})
	b, err := os.ReadFile(filepath.Join(dir, DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	swapKey := func() string { // device 1's key with device 2's certificate
		k1 := lines[0][:strings.Index(lines[0], `"cert"`)]
		return k1 + lines[1][strings.Index(lines[1], `"cert"`):]
	}
	tests := []struct {
		name, content string
		wantLine      int
	}{
		{"fail/not JSON", lines[0] + "\n{\n", 2},
		{"fail/unknown field", strings.Replace(lines[0], `{"serial"`, `{"x":1,"serial"`, 1), 1},
		{"fail/trailing data", lines[0] + "}", 1},
		{"fail/no serial", strings.Replace(lines[0], `"serial":"ACME-000001"`, `"serial":""`, 1), 1},
		{"fail/serial not the IDevID's", lines[0] + "\n" + strings.Replace(lines[1], `"serial":"ACME-000002"`, `"serial":"ACME-000001"`, 1), 2},
		{"fail/key of another device", swapKey(), 1},
		{"fail/no certificate", strings.Replace(lines[0], "CERTIFICATE", "NOTHING", -1), 1},
		{"fail/bad key PEM", strings.Replace(lines[0], "PRIVATE KEY", "PUBLIC KEY", -1), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), DevicesFile)
			write(t, p, []byte(tt.content))
			got, err := ReadDevices(p)
			if !errors.Is(err, ErrMalformed) || got != nil {
				t.Fatalf("ReadDevices = %d devices, %v; want ErrMalformed", len(got), err)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%s:%d:", p, tt.wantLine)) {
				t.Fatalf("error %q does not name line %d", err, tt.wantLine)
			}
		})
	}
	t.Run("ok/blank lines skipped", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), DevicesFile)
		write(t, p, []byte(lines[0]+"\n\n"+lines[1]+"\n"))
		got, err := ReadDevices(p)
		if err != nil || len(got) != 2 {
			t.Fatalf("ReadDevices = %d devices, %v", len(got), err)
		}
	})
}

func TestWriteDeviceFiles(t *testing.T) {
	dir := t.TempDir()
	mustRun(t, Options{Out: dir, Count: 1})
	devices, err := ReadDevices(filepath.Join(dir, DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	d := devices[0]
	for _, tt := range []struct {
		name string
		d    Device
	}{
		{"ok/from PEM", d},
		{"ok/from parsed key and chain", Device{Serial: d.Serial, Key: d.Key, Chain: d.Chain}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "dev")
			certPath, keyPath, err := WriteDeviceFiles(tt.d, out)
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(keyPath); err != nil || fi.Mode() != 0o600 {
				t.Fatalf("key.pem: %v %v", fi.Mode(), err)
			}
			if fi, err := os.Stat(out); err != nil || fi.Mode() != 0o700|fs.ModeDir {
				t.Fatalf("dir: %v %v", fi.Mode(), err)
			}
			certPEM, err := os.ReadFile(certPath)
			if err != nil || !bytes.Equal(certPEM, d.CertPEM) {
				t.Fatalf("cert.pem differs from the device's chain: %v", err)
			}
			keyPEM, err := os.ReadFile(keyPath)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(keyPEM), "-----BEGIN PRIVATE KEY-----") {
				t.Fatalf("key.pem is not PKCS#8: %.40q", keyPEM)
			}
			k, err := parseKeyPEM(keyPEM)
			if err != nil || !k.Equal(d.Key) {
				t.Fatalf("key.pem: %v", err)
			}
			checkWithOpenSSL(t, filepath.Join(dir, RootCertFile), filepath.Join(dir, IntermediateCertFile), certPath, keyPath)
		})
	}
	t.Run("fail/empty device", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "dev")
		c, k, err := WriteDeviceFiles(Device{Serial: "X"}, out)
		if !errors.Is(err, ErrMalformed) || c != "" || k != "" {
			t.Fatalf("WriteDeviceFiles = %q, %q, %v", c, k, err)
		}
		if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Fatal("directory created for nothing")
		}
	})
}

// checkWithOpenSSL checks, when openssl is installed, that OpenSSL reads the
// key, that it matches the certificate and that the chain verifies.
func checkWithOpenSSL(t *testing.T, root, inter, certPath, keyPath string) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed: interoperability not checked")
		return
	}
	run := func(args ...string) []byte {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return out
	}
	keyPub := run("pkey", "-in", keyPath, "-pubout")
	certPub := run("x509", "-in", certPath, "-noout", "-pubkey")
	if !bytes.Equal(keyPub, certPub) {
		t.Fatalf("openssl: key.pem public key\n%s\ndiffers from cert.pem's\n%s", keyPub, certPub)
	}
	out := run("verify", "-CAfile", root, "-untrusted", inter, "-purpose", "sslclient", certPath)
	if !bytes.Contains(out, []byte(": OK")) {
		t.Fatalf("openssl verify: %s", out)
	}
}
