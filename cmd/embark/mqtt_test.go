package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/server"
)

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// The operator path to an external broker: `embark mqtt mosquitto-config`
// writes a configuration Mosquitto starts with; Embark, pointed at its
// service listener, serves a device that connects to its device listener.
func TestMosquittoConfig(t *testing.T) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if _, e := os.Stat("/usr/sbin/mosquitto"); e == nil {
			bin = "/usr/sbin/mosquitto"
		} else if os.Getenv("EMBARK_INTEROP_REQUIRED") == "1" {
			t.Fatal("mosquitto not installed")
		} else {
			t.Skip("mosquitto not installed")
		}
	}
	data := filepath.Join(t.TempDir(), "data")
	fdir, _ := mint(t, 1)
	out := filepath.Join(t.TempDir(), "mosq")
	devPort, svcPort := freePort(t), freePort(t)
	if r := runCLI(t, "mqtt", "mosquitto-config", "--data", data); r.code != 2 {
		t.Fatalf("without --out: %v, want usage error", r)
	}
	got := mustRun(t, "mqtt", "mosquitto-config", "--data", data, "--out", out, "--trust", filepath.Join(fdir, factory.TrustFile),
		"--port", strconv.Itoa(devPort), "--service-port", strconv.Itoa(svcPort))
	if !strings.Contains(got, "manufacturers: acme") {
		t.Fatalf("output %q", got)
	}
	acl, err := os.ReadFile(filepath.Join(out, "device.acl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(acl), "pattern write embark/v1/urn:dev:embark:acme:%u/enroll") {
		t.Fatalf("device ACL lacks the IDevID pattern:\n%s", acl)
	}
	mosq := exec.Command(bin, "-c", filepath.Join(out, "mosquitto.conf"))
	if err := mosq.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mosq.Process.Kill(); mosq.Wait() })
	waitListening(t, devPort)
	waitListening(t, svcPort)

	mustRun(t, "manufacturer", "trust", filepath.Join(fdir, factory.TrustFile), "--data", data)
	mustRun(t, "provenance", "import", filepath.Join(fdir, factory.ManifestFile), "--data", data)
	cfg, err := config.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	cfg.CoAP.UDP, cfg.CoAP.TCP, cfg.HTTPS.Listen = "127.0.0.1:0", "", ""
	cfg.CoAP.BRSKI = ""
	cfg.MQTT.Listen, cfg.MQTT.Broker = "", "mqtts://127.0.0.1:"+strconv.Itoa(svcPort)
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock")
	ctx := context.Background()
	srv, err := server.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	select {
	case <-srv.MQTT().Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Embark did not connect to Mosquitto")
	}

	devs, err := factory.ReadDevices(filepath.Join(fdir, factory.DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	d := devs[0]
	cert := tls.Certificate{PrivateKey: d.Key}
	for _, c := range d.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	roots := x509.NewCertPool()
	roots.AddCert(srv.CA().Root())
	id := device.ID("acme", d.Serial)
	c, err := mqttclient.Dial(ctx, mqttclient.Config{Target: "mqtts://127.0.0.1:" + strconv.Itoa(devPort), Roots: roots,
		Certificate: cert, DeviceID: id, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := c.Enroll(ctx, csr, nil)
	if err != nil {
		t.Fatalf("enroll through Mosquitto: %v", err)
	}
	if err := iss.Verify(roots, &k.PublicKey, id, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func waitListening(t *testing.T, port int) {
	t.Helper()
	for range 100 {
		if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 100*time.Millisecond); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %d", port)
}
