package chaos

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/config"
)

func freeUDPPort(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

type proc struct {
	cmd  *exec.Cmd
	sock string
}

func start(t *testing.T, bin, data string) *proc {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data", data, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, sock: cfg.SocketPath()}
	t.Cleanup(func() { _ = p.cmd.Process.Kill(); _, _ = p.cmd.Process.Wait() })
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("unix", p.sock); err == nil {
			c.Close()
			return p
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("server did not start")
	return nil
}

// TestKillMidStorm enrolls devices from 32 workers, SIGKILLs the server after
// 100 acknowledged enrollments, restarts it on the same data directory and
// checks that every acknowledged certificate is the device's current one,
// and that devices cut off mid-request complete with the same CSR.
func TestKillMidStorm(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the server binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "embark")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/embark").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	if out, err := exec.Command(bin, "init", "--data", data).CombinedOutput(); err != nil {
		t.Fatalf("init: %v\n%s", err, out)
	}
	cfg, err := config.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeUDPPort(t)
	cfg.CoAP.UDP, cfg.CoAP.TCP = addr, ""
	cfg.CoAP.BRSKI = ""
	cfg.MQTT.Listen = "" // the storm goes over CoAP
	cfg.HTTPS.Listen = ""
	cfg.AdminSocket = filepath.Join(dir, "a.sock")
	if err := config.Write(cfg); err != nil {
		t.Fatal(err)
	}
	const n = 400
	fdir := filepath.Join(dir, "factory")
	if _, err := factory.Run(context.Background(), factory.Options{Out: fdir, Count: n}); err != nil {
		t.Fatal(err)
	}
	devs, err := factory.ReadDevices(filepath.Join(fdir, "devices.jsonl"))
	if err != nil {
		t.Fatal(err)
	}

	p := start(t, bin, data)
	cl := admin.DialSocket(p.sock)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, f := range []struct{ path, file string }{{"/v1/manufacturers", "trust.json"}, {"/v1/manifests", "manifest.json"}} {
		b, err := os.ReadFile(filepath.Join(fdir, f.file))
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.Do(ctx, http.MethodPost, f.path, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	rootDER, err := os.ReadFile(filepath.Join(data, "ca", "root.crt"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(rootDER)
	root, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)

	csrs := make([][]byte, n)
	for i := range csrs {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csrs[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: devs[i].Serial}}, k)
		if err != nil {
			t.Fatal(err)
		}
	}
	enroll := func(i int) (*x509.Certificate, error) {
		d := devs[i]
		cert := tls.Certificate{PrivateKey: d.Key}
		for _, c := range d.Chain {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
		c, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + addr, Roots: roots, Certificate: &cert, Timeout: 3 * time.Second})
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.Enroll(ctx, csrs[i])
	}

	acked := make([]*x509.Certificate, n)
	var ackCount atomic.Int64
	killed := make(chan struct{})
	var once sync.Once
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				select {
				case <-killed:
					return
				default:
				}
				c, err := enroll(i)
				if err != nil {
					continue // cut off by the kill: the device retries later
				}
				acked[i] = c
				if ackCount.Add(1) == 100 {
					once.Do(func() {
						_ = p.cmd.Process.Signal(syscall.SIGKILL)
						close(killed)
					})
				}
			}
		}()
	}
	wg.Wait()
	_, _ = p.cmd.Process.Wait()
	t.Logf("%d enrollments acknowledged before the kill", ackCount.Load())

	p = start(t, bin, data)
	cl = admin.DialSocket(p.sock)
	for i, c := range acked {
		if c == nil {
			continue
		}
		var d admin.DeviceDetail
		if err := cl.Do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape("acme:"+devs[i].Serial), nil, &d); err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("%x", c.SerialNumber); d.Device.Current != want {
			t.Fatalf("%s: acknowledged certificate %s lost (registry current %q)", devs[i].Serial, want, d.Device.Current)
		}
	}
	// Every device now completes; those acknowledged get their certificate again.
	for i := range devs {
		c, err := enroll(i)
		if err != nil {
			t.Fatalf("%s after restart: %v", devs[i].Serial, err)
		}
		if acked[i] != nil && !c.Equal(acked[i]) {
			t.Fatalf("%s: retry after restart got a second certificate", devs[i].Serial)
		}
	}
}
