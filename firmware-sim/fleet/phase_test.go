package fleet

import (
	"github.com/embark-iot/embark/pkg/devattr"

	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// testRunner is a runner that trusts p's root and intermediate.
func testRunner(p *esttest.PKI, o Options) *runner {
	r := newRunner(o, p.Root.Cert)
	r.intermediates = [][]byte{p.Intermediate.Cert.Raw}
	r.interPool.AddCert(p.Intermediate.Cert)
	r.inters = []*x509.Certificate{p.Intermediate.Cert}
	return r
}

func TestVerifyIssued(t *testing.T) {
	p := testPKI(t)
	r := testRunner(p, Options{})
	key, _, err := newCSR("SN-1", devattr.Reported{})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := newCSR("SN-1", devattr.Reported{})
	if err != nil {
		t.Fatal(err)
	}
	good, err := p.Intermediate.Issue("SN-1", &key.PublicKey, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey, err := p.Intermediate.Issue("SN-1", &other.PublicKey, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	// The manufacturer CA is no Embark CA: its certificate must not pass.
	foreign, err := p.Manufacturer.Issue("SN-1", &key.PublicKey, nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		want error
	}{
		{name: "ok/issued by the intermediate for the CSR key", cert: good},
		{name: "fail/another key", cert: wrongKey, want: ErrKeyMismatch},
		{name: "fail/not under the Embark root", cert: foreign, want: ErrUntrustedCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := r.verifyIssued(key, tc.cert); !errors.Is(err, tc.want) {
				t.Fatalf("verifyIssued = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestPhase(t *testing.T) {
	p := testPKI(t)
	var progress bytes.Buffer
	r := testRunner(p, Options{Concurrency: 4, Retries: -1, Progress: &progress})
	r.progressEvery = time.Hour // only the closing line

	devs := make([]*simDevice, 10)
	for i := range devs {
		devs[i] = &simDevice{serial: fmt.Sprintf("SN-%d", i)}
	}
	if err := prepare(context.Background(), devs, false); err != nil {
		t.Fatal(err)
	}
	denied := &estclient.StatusError{Code: codes.Forbidden, Reason: "denied"}
	var mu sync.Mutex
	attempts := map[string]int{}
	spec := r.enrollPhase()
	spec.name = "test"
	// Devices 0-5 are enrolled, 6-7 denied, 8 gets a certificate for
	// another key, 9 one from a foreign CA.
	spec.attempt = func(_ context.Context, d *simDevice) (*x509.Certificate, error) {
		mu.Lock()
		attempts[d.serial]++
		mu.Unlock()
		var i int
		fmt.Sscanf(d.serial, "SN-%d", &i)
		switch {
		case i <= 5:
			return p.Intermediate.Issue(d.serial, &d.enrollKey.PublicKey, nil, nil, x509.ExtKeyUsageClientAuth)
		case i <= 7:
			return nil, denied
		case i == 8:
			return p.Intermediate.Issue(d.serial, &devs[0].enrollKey.PublicKey, nil, nil, x509.ExtKeyUsageClientAuth)
		default:
			return p.Manufacturer.Issue(d.serial, &d.enrollKey.PublicKey, nil, nil, x509.ExtKeyUsageClientAuth)
		}
	}
	rep := r.phase(context.Background(), spec, devs)

	if rep.Phase != "test" || rep.Devices != 10 || rep.OK != 6 || rep.Retries != 0 {
		t.Fatalf("report = %+v, want 10 devices, 6 ok, no retries", rep)
	}
	wantFailed := map[string]int{"denied": 2, ReasonKeyMismatch: 1, ReasonUntrustedLDevID: 1}
	if fmt.Sprint(rep.Failed) != fmt.Sprint(wantFailed) {
		t.Fatalf("failed = %v, want %v", rep.Failed, wantFailed)
	}
	if len(attempts) != 10 {
		t.Fatalf("%d devices attempted, want 10", len(attempts))
	}
	for i, d := range devs {
		if (d.ldevid != nil) != (i <= 5) {
			t.Fatalf("%s: holds an LDevID = %v", d.serial, d.ldevid != nil)
		}
		if d.ldevid != nil && d.ldevidKey != d.enrollKey {
			t.Fatalf("%s: LDevID key is not the enrollment key", d.serial)
		}
	}
	if rep.Max == 0 || rep.P50 > rep.P99 || rep.P99 > rep.Max {
		t.Fatalf("latencies p50 %s p99 %s max %s out of order", rep.P50, rep.P99, rep.Max)
	}
	line := progress.String()
	if !strings.HasPrefix(line, "test 10/10 ") || !strings.HasSuffix(line, " errors 4\n") || strings.Count(line, "\n") != 1 {
		t.Fatalf("progress = %q, want one closing line with 10/10 and 4 errors", line)
	}

	t.Run("ok/state file holds the enrolled devices", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.jsonl")
		if err := WriteState(path, stateOf(devs, r.intermediates)); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("state file mode %v, want 0600", fi.Mode().Perm())
		}
		recs, err := ReadState(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 6 {
			t.Fatalf("%d records, want 6", len(recs))
		}
		for i, rec := range recs {
			if rec.Serial != devs[i].serial {
				t.Fatalf("record %d is %q, want %q", i, rec.Serial, devs[i].serial)
			}
			pair, err := tls.X509KeyPair([]byte(rec.CertPEM), []byte(rec.KeyPEM))
			if err != nil {
				t.Fatalf("%s: %v", rec.Serial, err)
			}
			if len(pair.Certificate) != 2 || !bytes.Equal(pair.Certificate[0], devs[i].ldevid.Raw) || !bytes.Equal(pair.Certificate[1], p.Intermediate.Cert.Raw) {
				t.Fatalf("%s: chain is not LDevID + intermediate", rec.Serial)
			}
			if !pair.PrivateKey.(*ecdsa.PrivateKey).Equal(devs[i].ldevidKey) {
				t.Fatalf("%s: key is not the LDevID key", rec.Serial)
			}
		}
	})

	t.Run("fail/canceled phase counts the devices never started", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		r := testRunner(p, Options{Concurrency: 2, Retries: -1})
		rep := r.phase(ctx, spec, devs)
		if rep.Devices != 10 || rep.OK+rep.FailedCount() != 10 || rep.Failed[ReasonCanceled] == 0 {
			t.Fatalf("report = %+v, want every device accounted for, some canceled", rep)
		}
	})
}

func TestReadState(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name    string
		content string
		want    int
		fail    bool
	}{
		{name: "ok/empty", content: "", want: 0},
		{name: "ok/blank lines skipped", content: "{\"serial\":\"a\"}\n\n{\"serial\":\"b\"}\n", want: 2},
		{name: "fail/not json", content: "{\"serial\":\"a\"}\nnot json\n", fail: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, "/", "_"))
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			recs, err := ReadState(path)
			if (err != nil) != tc.fail {
				t.Fatalf("err = %v, want failure %v", err, tc.fail)
			}
			if tc.fail && !strings.Contains(err.Error(), ":2:") {
				t.Fatalf("err = %v, want the line number 2", err)
			}
			if !tc.fail && len(recs) != tc.want {
				t.Fatalf("%d records, want %d", len(recs), tc.want)
			}
		})
	}
}
