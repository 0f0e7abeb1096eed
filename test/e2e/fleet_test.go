package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store"
)

// TestFleetOnboardsAndRenews enrolls 200 devices at once over CoAP/DTLS,
// renews them all over /sren, and checks the registry and what each device
// holds.
func TestFleetOnboardsAndRenews(t *testing.T) {
	const n = 200
	e := startEmbark(t, nil)
	fdir := mint(t, n, 0)
	if res := e.trustAndImport(t, fdir); res.New != n {
		t.Fatalf("imported %d new devices, want %d", res.New, n)
	}
	state := filepath.Join(t.TempDir(), "state.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	reports, err := fleet.Run(ctx, fleet.Options{
		FactoryDir:  fdir,
		Target:      "coaps://" + e.srv.UDPAddr().String(),
		RootFile:    e.root,
		Concurrency: n, // all at once
		Renew:       true,
		StateFile:   state,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		t.Log(r.String())
		if r.OK != n {
			t.Fatalf("%s: %d of %d ok, failures %v", r.Phase, r.OK, n, r.Failed)
		}
	}
	if len(reports) != 2 || reports[0].Phase != "enroll" || reports[1].Phase != "renew" {
		t.Fatalf("phases = %v", reports)
	}
	checkFleet(t, e, state, n, 1)
}

// TestFleetOverTLS does the same over CoAP over TLS (RFC 8323).
func TestFleetOverTLS(t *testing.T) {
	const n = 40
	e := startEmbark(t, nil)
	fdir := mint(t, n, 0)
	e.trustAndImport(t, fdir)
	state := filepath.Join(t.TempDir(), "state.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps+tcp://" + e.srv.TCPAddr().String(),
		RootFile: e.root, Concurrency: 20, Renew: true, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		if r.OK != n {
			t.Fatalf("%s: %d of %d ok, failures %v", r.Phase, r.OK, n, r.Failed)
		}
	}
	checkFleet(t, e, state, n, 1)
}

// TestLostAnswersAreIdempotent drops a third of the answers: devices resend
// the same request and must get the certificate already issued.
func TestLostAnswersAreIdempotent(t *testing.T) {
	const n = 60
	e := startEmbark(t, nil)
	fdir := mint(t, n, 0)
	e.trustAndImport(t, fdir)
	state := filepath.Join(t.TempDir(), "state.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(),
		RootFile: e.root, Concurrency: 30, Loss: 0.33, Retries: 10, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if reports[0].OK != n || reports[0].Retries == 0 {
		t.Fatalf("enroll: %d ok, %d retries (want all ok, some retries): %v", reports[0].OK, reports[0].Retries, reports[0].Failed)
	}
	checkFleet(t, e, state, n, 0)
	// No device was issued more than one certificate.
	if err := e.srv.Store().View(ctx, func(r store.Reader) error {
		return r.Devices("", func(d device.Device) (bool, error) {
			cs, err := r.CertificatesOf(d.ID)
			if err != nil {
				return false, err
			}
			if len(cs) != 1 {
				return false, fmt.Errorf("%s holds %d certificates after lost answers, want 1", d.ID, len(cs))
			}
			return true, nil
		})
	}); err != nil {
		t.Fatal(err)
	}
}

// checkFleet asserts every device holds exactly one active LDevID that
// chains to the Embark root, names the device, and is the registry's
// current certificate for it.
func checkFleet(t *testing.T, e *embark, stateFile string, n int, renewals uint32) {
	t.Helper()
	recs, err := fleet.ReadState(stateFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n {
		t.Fatalf("state holds %d devices, want %d", len(recs), n)
	}
	inters := x509.NewCertPool()
	inters.AddCert(e.srv.CA().Intermediate())
	ctx := context.Background()
	for _, rec := range recs {
		pair, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM))
		if err != nil {
			t.Fatalf("%s: %v", rec.Serial, err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.rootPool(), Intermediates: inters,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("%s: LDevID does not chain to the Embark root: %v", rec.Serial, err)
		}
		id := device.ID("acme", rec.Serial)
		if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id {
			t.Fatalf("%s: LDevID names %v, want %s", rec.Serial, leaf.URIs, id)
		}
		err = e.srv.Store().View(ctx, func(r store.Reader) error {
			d, err := r.Device(id)
			if err != nil {
				return err
			}
			if d.State != device.Onboarded || d.Current != onboard.SerialHex(leaf) || d.Renewals != renewals {
				return fmt.Errorf("%s: registry %+v, device holds %s", id, d, onboard.SerialHex(leaf))
			}
			cs, err := r.CertificatesOf(id)
			if err != nil {
				return err
			}
			fresh := 0
			for _, c := range cs {
				if c.Status == device.CertIssued {
					fresh++
				}
			}
			if fresh != 1 {
				return fmt.Errorf("%s: %d active certificates not yet confirmed, want exactly the current one", id, fresh)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	_ = os.Remove(stateFile)
}
