package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
	"github.com/embark-iot/embark/firmware-sim/factory"
)

// world is a factory directory, an Embark PKI and its root file.
type world struct {
	factoryDir string
	rootFile   string
	pki        *esttest.PKI
	clientCAs  *x509.CertPool
}

func newWorld(t *testing.T, devices int) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{factoryDir: filepath.Join(dir, "factory"), pki: testPKI(t)}
	if _, err := factory.Run(context.Background(), factory.Options{Out: w.factoryDir, Count: devices}); err != nil {
		t.Fatal(err)
	}
	w.rootFile = filepath.Join(dir, "embark-root.pem")
	writePEM(t, w.rootFile, w.pki.Root.Cert)
	manufacturer, err := os.ReadFile(filepath.Join(w.factoryDir, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	w.clientCAs = x509.NewCertPool()
	if !w.clientCAs.AppendCertsFromPEM(manufacturer) {
		t.Fatal("factory root.pem holds no certificate")
	}
	w.clientCAs.AddCert(w.pki.Root.Cert)
	return w
}

func writePEM(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, out, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (w *world) start(t *testing.T, o esttest.Options) *esttest.Server {
	t.Helper()
	o.ClientCAs = w.clientCAs
	s, err := esttest.Start(w.pki, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func phases(reps []Report) []string {
	out := make([]string, len(reps))
	for i, r := range reps {
		out[i] = r.Phase
	}
	return out
}

func TestRun(t *testing.T) {
	w := newWorld(t, 15)
	ctx := context.Background()

	t.Run("ok/both with renewal over DTLS", func(t *testing.T) {
		s := w.start(t, esttest.Options{})
		state := filepath.Join(t.TempDir(), "state.jsonl")
		reps, err := Run(ctx, Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: w.rootFile,
			Count: 12, Concurrency: 4, Mode: ModeBoth, Renew: true, StateFile: state})
		if err != nil {
			t.Fatal(err)
		}
		if got := phases(reps); len(got) != 3 || got[0] != PhaseCrts || got[1] != PhaseEnroll || got[2] != PhaseRenew {
			t.Fatalf("phases = %v, want crts, enroll, renew", got)
		}
		for _, r := range reps {
			if r.Devices != 12 || r.OK != 12 || r.FailedCount() != 0 || r.Retries != 0 {
				t.Fatalf("%s", r)
			}
		}
		if reps[1].OfCeiling <= 0 || reps[0].OfCeiling != 0 || reps[2].OfCeiling != 0 {
			t.Fatalf("ceiling fractions %g %g %g, want only enroll's set", reps[0].OfCeiling, reps[1].OfCeiling, reps[2].OfCeiling)
		}
		if s.Issued() != 24 || s.Requests() != 24 {
			t.Fatalf("server issued %d for %d requests, want 24 for 24", s.Issued(), s.Requests())
		}
		recs, err := ReadState(state)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 12 {
			t.Fatalf("%d state records, want 12", len(recs))
		}
		devs, err := factory.ReadDevices(filepath.Join(w.factoryDir, "devices.jsonl"))
		if err != nil {
			t.Fatal(err)
		}
		for i, rec := range recs {
			if rec.Serial != devs[i].Serial {
				t.Fatalf("record %d is %q, want %q", i, rec.Serial, devs[i].Serial)
			}
			pair, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM))
			if err != nil {
				t.Fatal(err)
			}
			if pair.Leaf.Subject.CommonName != rec.Serial {
				t.Fatalf("%s: LDevID is for %q", rec.Serial, pair.Leaf.Subject.CommonName)
			}
			if pair.PrivateKey.(*ecdsa.PrivateKey).Equal(devs[i].Key) {
				t.Fatalf("%s: LDevID key is the IDevID key", rec.Serial)
			}
		}
	})

	t.Run("ok/held once then enrolled over TCP", func(t *testing.T) {
		s := w.start(t, esttest.Options{Transport: "coaps+tcp", HoldFirst: 1})
		reps, err := Run(ctx, Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: w.rootFile, Count: 6, Concurrency: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) != 1 || reps[0].Phase != PhaseEnroll || reps[0].OK != 6 || reps[0].Retries != 6 {
			t.Fatalf("reports %v, want one enroll report, 6 ok after 6 retries", reps)
		}
		if s.Issued() != 6 || s.Requests() != 12 {
			t.Fatalf("server issued %d for %d requests, want 6 for 12", s.Issued(), s.Requests())
		}
	})

	t.Run("ok/lost answers get the same certificate again", func(t *testing.T) {
		s := w.start(t, esttest.Options{})
		reps, err := Run(ctx, Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: w.rootFile,
			Concurrency: 8, Loss: 0.3, Retries: 30})
		if err != nil {
			t.Fatal(err)
		}
		r := reps[0]
		if r.OK != 15 || r.FailedCount() != 0 {
			t.Fatalf("%s", r)
		}
		if s.Issued() != 15 || s.Requests() != 15+r.Retries {
			t.Fatalf("server issued %d for %d requests, want 15 for %d", s.Issued(), s.Requests(), 15+r.Retries)
		}
	})

	t.Run("ok/refusals are counted by reason", func(t *testing.T) {
		// The server does not know the factory's CA, so no device
		// authenticates with its IDevID: every enrollment is refused.
		p := testPKI(t)
		s, err := esttest.Start(w.pki, esttest.Options{ClientCAs: p.Roots()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		reps, err := Run(ctx, Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: w.rootFile, Count: 3})
		if err != nil {
			t.Fatal(err)
		}
		r := reps[0]
		if r.OK != 0 || r.Failed["unauthenticated"] != 3 || len(r.Failed) != 1 || r.Retries != 0 {
			t.Fatalf("%s\nwant 3 failed as unauthenticated, no retries", r)
		}
		if r.P50 != 0 || r.PerSecond != 0 {
			t.Fatalf("latency or throughput reported without a success: %s", r)
		}
	})

	for _, tc := range []struct {
		name string
		o    func(s *esttest.Server) Options
		want error
	}{
		{name: "fail/server not under the given root", want: ErrCACerts, o: func(s *esttest.Server) Options {
			other := filepath.Join(t.TempDir(), "other.pem")
			writePEM(t, other, testPKI(t).Root.Cert)
			return Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: other}
		}},
		{name: "fail/root file with two certificates", want: ErrRoot, o: func(s *esttest.Server) Options {
			two := filepath.Join(t.TempDir(), "two.pem")
			writePEM(t, two, w.pki.Root.Cert, w.pki.Intermediate.Cert)
			return Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: two}
		}},
		{name: "fail/root file that is no CA", want: ErrRoot, o: func(s *esttest.Server) Options {
			leaf := filepath.Join(t.TempDir(), "leaf.pem")
			writePEM(t, leaf, w.pki.Server.Leaf)
			return Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: leaf}
		}},
		{name: "fail/no root file", want: ErrRoot, o: func(s *esttest.Server) Options {
			return Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: filepath.Join(t.TempDir(), "missing.pem")}
		}},
		{name: "fail/more devices than the factory made", want: ErrOptions, o: func(s *esttest.Server) Options {
			return Options{FactoryDir: w.factoryDir, Target: s.Target, RootFile: w.rootFile, Count: 16}
		}},
		{name: "fail/plain coap target", want: ErrOptions, o: func(*esttest.Server) Options {
			return Options{FactoryDir: w.factoryDir, Target: "coap://127.0.0.1:5683", RootFile: w.rootFile}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := w.start(t, esttest.Options{})
			o := tc.o(s)
			o.Timeout = 5 * time.Second
			o.StateFile = filepath.Join(t.TempDir(), "state.jsonl")
			reps, err := Run(ctx, o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if len(reps) != 0 || s.Requests() != 0 {
				t.Fatalf("%d reports, %d requests after a failed start", len(reps), s.Requests())
			}
			if _, err := os.Stat(o.StateFile); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("state file written after a failed start: %v", err)
			}
		})
	}
}
