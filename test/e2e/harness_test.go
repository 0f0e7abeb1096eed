package e2e

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/server"
)

// embark is a server started for one test.
type embark struct {
	srv    *server.Server
	dir    string
	client *admin.Client
	root   string // path of the Embark root PEM
	// mqttAddr is where devices reach the MQTT broker (set by
	// startEmbarkMQTT).
	mqttAddr string
}

func startEmbark(t *testing.T, mutate func(*config.Config)) *embark {
	t.Helper()
	return startEmbarkWith(t, mutate)
}

func startEmbarkWith(t *testing.T, mutate func(*config.Config), opts ...server.Option) *embark {
	t.Helper()
	return startEmbarkDir(t, filepath.Join(t.TempDir(), "data"), mutate, opts...)
}

func startEmbarkDir(t *testing.T, dir string, mutate func(*config.Config), opts ...server.Option) *embark {
	t.Helper()
	cfg := config.DefaultConfig(dir)
	cfg.CoAP.UDP, cfg.CoAP.TCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CoAP.BRSKI = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTPS.Listen = "127.0.0.1:0"
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock") // short: unix socket paths are limited
	if mutate != nil {
		mutate(&cfg)
	}
	ctx := context.Background()
	srv, err := server.New(ctx, cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
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
	cl.Actor = "e2e"
	return &embark{srv: srv, dir: dir, client: cl, root: root}
}

// mint runs the simulated factory.
func mint(t *testing.T, n int, expired int) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "factory")
	if _, err := factory.Run(context.Background(), factory.Options{Out: out, Count: n, ExpiredIDevIDs: expired}); err != nil {
		t.Fatal(err)
	}
	return out
}

// trustAndImport registers the factory's manufacturer and manifest through
// the admin socket, as an operator would.
func (e *embark) trustAndImport(t *testing.T, factoryDir string) provenance.ImportResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bundle, err := os.ReadFile(filepath.Join(factoryDir, "trust.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.Do(ctx, http.MethodPost, "/v1/manufacturers", bundle, nil); err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(filepath.Join(factoryDir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var res provenance.ImportResult
	if err := e.client.Do(ctx, http.MethodPost, "/v1/manifests", env, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

func (e *embark) rootPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.srv.CA().Root())
	return p
}
