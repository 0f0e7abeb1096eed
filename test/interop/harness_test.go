package interop

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pkg/store"
)

// embark is a server started for one test.
type embark struct {
	srv    *server.Server
	client *admin.Client
	// root is the path of Embark's root certificate (PEM), the CA file the
	// clients verify the server with.
	root string
	// udp and tcp are the CoAP-over-DTLS and CoAP-over-TLS addresses.
	udp, tcp string
}

func startEmbark(t *testing.T) *embark {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	cfg := config.DefaultConfig(dir)
	cfg.CoAP.UDP, cfg.CoAP.TCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CoAP.BRSKI = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTPS.Listen = "127.0.0.1:0"
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock") // short: unix socket paths are limited
	ctx := context.Background()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	root := filepath.Join(t.TempDir(), "embark-root.pem")
	if err := os.WriteFile(root, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.CA().Root().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	cl := admin.DialSocket(cfg.SocketPath())
	cl.Actor = "interop"
	return &embark{srv: srv, client: cl, root: root, udp: srv.UDPAddr().String(), tcp: srv.TCPAddr().String()}
}

// coaps returns the CoAP-over-DTLS URI of path.
func (e *embark) coaps(path string) string { return "coaps://" + e.udp + path }

// coapsTCP returns the CoAP-over-TLS URI of path.
func (e *embark) coapsTCP(path string) string { return "coaps+tcp://" + e.tcp + path }

// fleet is a factory output directory and its devices.
type fleet struct {
	dir          string
	manufacturer string
	devices      []factory.Device
	next         int // next unused device
}

// mint runs the simulated factory: n devices of a new manufacturer.
func mint(t *testing.T, manufacturer string, n int) *fleet {
	t.Helper()
	out := filepath.Join(t.TempDir(), manufacturer)
	if _, err := factory.Run(context.Background(), factory.Options{Out: out, Count: n, Manufacturer: manufacturer}); err != nil {
		t.Fatal(err)
	}
	f := &fleet{dir: out, manufacturer: manufacturer}
	f.reload(t)
	return f
}

// mintMore adds n devices to the fleet in a new manifest revision.
func (f *fleet) mintMore(t *testing.T, n int) {
	t.Helper()
	if _, err := factory.Run(context.Background(), factory.Options{Out: f.dir, Count: n}); err != nil {
		t.Fatal(err)
	}
	f.reload(t)
}

func (f *fleet) reload(t *testing.T) {
	t.Helper()
	devs, err := factory.ReadDevices(filepath.Join(f.dir, factory.DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	f.devices = devs
}

// take returns the next device not handed out yet.
func (f *fleet) take(t *testing.T) factory.Device {
	t.Helper()
	if f.next >= len(f.devices) {
		t.Fatalf("fleet %s: all %d devices used", f.manufacturer, len(f.devices))
	}
	d := f.devices[f.next]
	f.next++
	return d
}

// creds are a device's certificate and key files, as coap-client reads them.
type creds struct {
	serial    string
	cert, key string
	idevid    *x509.Certificate
}

// deviceFiles writes d's cert.pem (IDevID then intermediate) and key.pem.
// With leafOnly, cert.pem holds the IDevID alone.
func deviceFiles(t *testing.T, d factory.Device, leafOnly bool) creds {
	t.Helper()
	if leafOnly {
		d.CertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: d.Chain[0].Raw})
		d.Chain = d.Chain[:1]
	}
	cert, key, err := factory.WriteDeviceFiles(d, filepath.Join(t.TempDir(), d.Serial))
	if err != nil {
		t.Fatal(err)
	}
	return creds{serial: d.Serial, cert: cert, key: key, idevid: d.Chain[0]}
}

// trust registers f's manufacturer through the admin socket, as an operator
// would. Without intermediates, only the manufacturer's roots are registered.
func (e *embark) trust(t *testing.T, f *fleet, intermediates bool) {
	t.Helper()
	bundle, err := os.ReadFile(filepath.Join(f.dir, factory.TrustFile))
	if err != nil {
		t.Fatal(err)
	}
	if !intermediates {
		var tb manifest.TrustBundle
		if err := json.Unmarshal(bundle, &tb); err != nil {
			t.Fatal(err)
		}
		if len(tb.Intermediates) == 0 {
			t.Fatalf("trust bundle of %s lists no intermediates to leave out", f.manufacturer)
		}
		tb.Intermediates = nil
		if bundle, err = tb.Marshal(); err != nil {
			t.Fatal(err)
		}
	}
	e.post(t, "/v1/manufacturers", bundle)
}

// importManifest imports f's current manifest.
func (e *embark) importManifest(t *testing.T, f *fleet) {
	t.Helper()
	env, err := os.ReadFile(filepath.Join(f.dir, factory.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	e.post(t, "/v1/manifests", env)
}

func (e *embark) post(t *testing.T, path string, body []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.client.Do(ctx, http.MethodPost, path, body, nil); err != nil {
		t.Fatalf("admin POST %s: %v", path, err)
	}
}

// stats returns the registry's record counts.
func (e *embark) stats(t *testing.T) store.Stats {
	t.Helper()
	st, err := e.srv.Store().Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Bytes = 0 // the file size is not content
	return st
}

// device returns the registry record of manufacturer's device serial.
func (e *embark) device(t *testing.T, manufacturer, serial string) (device.Device, []device.Certificate) {
	t.Helper()
	var d device.Device
	var certs []device.Certificate
	err := e.srv.Store().View(context.Background(), func(r store.Reader) error {
		var err error
		if d, err = r.Device(device.ID(manufacturer, serial)); err != nil {
			return err
		}
		certs, err = r.CertificatesOf(d.ID)
		return err
	})
	if err != nil {
		t.Fatalf("registry: device %s:%s: %v", manufacturer, serial, err)
	}
	return d, certs
}

// auditSince returns the audit entries appended after seq.
func (e *embark) auditSince(t *testing.T, seq uint64) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	err := e.srv.Store().View(context.Background(), func(r store.Reader) error {
		return r.Audit(seq, func(a audit.Entry) (bool, error) {
			out = append(out, a)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// lastAuditSeq returns the sequence number of the newest audit entry.
func (e *embark) lastAuditSeq(t *testing.T) uint64 {
	t.Helper()
	var seq uint64
	err := e.srv.Store().View(context.Background(), func(r store.Reader) error {
		last, err := r.LastAudit()
		seq = last.Seq
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// requiredEnv makes missing peers a failure instead of a skip.
const requiredEnv = "EMBARK_INTEROP_REQUIRED"

// missing skips the test (or fails it, under EMBARK_INTEROP_REQUIRED=1)
// because a peer is not installed.
func missing(t *testing.T, what string, err error) {
	t.Helper()
	msg := what + " not found on PATH (" + err.Error() + "): install Debian's libcoap3-bin and openssl (apt-get install libcoap3-bin openssl)"
	if required, _ := strconv.ParseBool(os.Getenv(requiredEnv)); required {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
