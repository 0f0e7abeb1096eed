package server

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pki"
)

// These tests do not run in parallel: Start changes the process umask
// while it creates the admin socket.

func mode(t testing.TB, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	cfg, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := config.DefaultConfig(dir); !reflect.DeepEqual(cfg, want) {
		t.Errorf("config %+v, want the defaults %+v", cfg, want)
	}
	perms := []struct {
		path string
		want fs.FileMode
	}{
		{dir, fs.ModeDir | 0o700},
		{filepath.Join(dir, config.FileName), 0o600},
		{filepath.Join(dir, CADir), fs.ModeDir | 0o700},
		{filepath.Join(dir, CADir, pki.RootKeyFile), 0o600},
		{filepath.Join(dir, CADir, pki.IntermediateKeyFile), 0o600},
		{filepath.Join(dir, CADir, pki.RootCertFile), 0o644},
		{filepath.Join(dir, CADir, pki.IntermediateCertFile), 0o644},
	}
	for _, p := range perms {
		if got := mode(t, p.path); got != p.want {
			t.Errorf("%s: mode %v, want %v", p.path, got, p.want)
		}
	}
	files := []string{
		filepath.Join(dir, config.FileName),
		filepath.Join(dir, CADir, pki.RootCertFile),
		filepath.Join(dir, CADir, pki.RootKeyFile),
		filepath.Join(dir, CADir, pki.IntermediateCertFile),
		filepath.Join(dir, CADir, pki.IntermediateKeyFile),
	}
	before := map[string][]byte{}
	for _, f := range files {
		before[f] = readFile(t, f)
	}

	again, err := Init(dir)
	if err != nil {
		t.Fatalf("second Init: %v", err)
	}
	if !reflect.DeepEqual(again, cfg) {
		t.Errorf("second Init: config %+v, want %+v", again, cfg)
	}
	for _, f := range files {
		if !bytes.Equal(readFile(t, f), before[f]) {
			t.Errorf("second Init changed %s", f)
		}
	}
}

func TestInitKeepsConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := config.DefaultConfig(dir)
	cfg.LogLevel, cfg.CoAP.UDP, cfg.Enrollment.Zone = "debug", "", "lab"
	if err := config.Write(cfg); err != nil {
		t.Fatal(err)
	}
	written := readFile(t, config.Path(dir))
	got, err := Init(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cfg) {
		t.Errorf("Init returned %+v, want the file's %+v", got, cfg)
	}
	if !bytes.Equal(readFile(t, config.Path(dir)), written) {
		t.Error("Init rewrote the configuration")
	}
}

func TestInitRefuses(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		want    error
		// noCA: Init must not have created a CA.
		noCA bool
	}{
		{name: "fail/configuration is not JSON", noCA: true, prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(config.Path(dir), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "fail/configuration has an unknown field", noCA: true, prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(config.Path(dir), []byte(`{"colour":"red"}`), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "fail/configuration is invalid", noCA: true, prepare: func(t *testing.T, dir string) {
			if err := os.WriteFile(config.Path(dir), []byte(`{"log_level":"loud"}`), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "fail/CA lost its intermediate key", want: pki.ErrIncompleteCA, prepare: func(t *testing.T, dir string) {
			if _, err := Init(dir); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(dir, CADir, pki.IntermediateKeyFile)); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.prepare(t, dir)
			var before []byte
			if b, err := os.ReadFile(filepath.Join(dir, CADir, pki.RootCertFile)); err == nil {
				before = b
			}
			_, err := Init(dir)
			if err == nil {
				t.Fatal("Init accepted")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			_, statErr := os.Stat(filepath.Join(dir, CADir))
			if tt.noCA && !errors.Is(statErr, fs.ErrNotExist) {
				t.Errorf("Init created %s (%v)", CADir, statErr)
			}
			if before != nil && !bytes.Equal(readFile(t, filepath.Join(dir, CADir, pki.RootCertFile)), before) {
				t.Error("Init replaced the root")
			}
		})
	}
}

// testConfig returns a configuration on loopback :0 listeners with the
// admin socket at a short path (unix socket paths are limited to ~100 bytes).
func testConfig(t testing.TB) config.Config {
	t.Helper()
	cfg := config.DefaultConfig(filepath.Join(t.TempDir(), "data"))
	cfg.CoAP.UDP, cfg.CoAP.TCP = "127.0.0.1:0", "127.0.0.1:0"
	cfg.CoAP.BRSKI = "127.0.0.1:0"
	cfg.MQTT.Listen = "127.0.0.1:0"
	cfg.HTTPS.Listen = "127.0.0.1:0"
	cfg.AdminSocket = filepath.Join(t.TempDir(), "a.sock")
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := config.Write(cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func start(t testing.TB, cfg config.Config) *Server {
	t.Helper()
	ctx := context.Background()
	srv, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ctx); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	// Wait until the admin socket answers: a Close right after Start can
	// run before listenAdmin's goroutine reads s.adminSrv, which Close sets
	// to nil (a nil dereference in that goroutine).
	if err := admin.DialSocket(cfg.SocketPath()).Do(ctx, http.MethodGet, "/v1/status", nil, nil); err != nil {
		srv.Close()
		t.Fatal(err)
	}
	return srv
}

type status struct {
	Registry  store.Stats       `json:"registry"`
	Listeners map[string]string `json:"listeners"`
	Started   string            `json:"started"`
	DataDir   string            `json:"data_dir"`
}

// loadFactory trusts a simulated manufacturer and imports its 3 devices.
func loadFactory(t testing.TB, cl *admin.Client) {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "factory")
	if _, err := factory.Run(ctx, factory.Options{Out: dir, Count: 3}); err != nil {
		t.Fatal(err)
	}
	if err := cl.Do(ctx, http.MethodPost, "/v1/manufacturers", readFile(t, filepath.Join(dir, factory.TrustFile)), nil); err != nil {
		t.Fatal(err)
	}
	var res provenance.ImportResult
	if err := cl.Do(ctx, http.MethodPost, "/v1/manifests", readFile(t, filepath.Join(dir, factory.ManifestFile)), &res); err != nil {
		t.Fatal(err)
	}
	if res.New != 3 {
		t.Fatalf("import: %+v", res)
	}
}

func TestServerLifecycle(t *testing.T) {
	ctx := context.Background()
	cfg := testConfig(t)
	srv := start(t, cfg)
	closed := false
	t.Cleanup(func() {
		if !closed {
			srv.Close()
		}
	})

	for name, a := range map[string]net.Addr{"udp": srv.UDPAddr(), "tcp": srv.TCPAddr()} {
		host, port, err := net.SplitHostPort(a.String())
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("%s listener %v", name, a)
		}
	}
	sock := cfg.SocketPath()
	if m := mode(t, sock); m&fs.ModeSocket == 0 || m.Perm() != 0o600 {
		t.Errorf("admin socket mode %v, want a socket 0600", m)
	}
	cl := admin.DialSocket(sock)
	var st status
	if err := cl.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"coaps": srv.UDPAddr().String(), "coaps+tcp": srv.TCPAddr().String(), "coap": srv.BRSKIAddr().String(), "admin": sock,
		"mqtts": srv.MQTTAddr().String(), "https": srv.HTTPSAddr().String()}
	if !reflect.DeepEqual(st.Listeners, want) || st.Started == "" || st.DataDir != cfg.DataDir {
		t.Errorf("status %+v, want listeners %v", st, want)
	}
	loadFactory(t, cl)
	root := srv.CA().Root().Raw

	t.Run("fail/second server on the same data directory", func(t *testing.T) {
		other := cfg
		other.AdminSocket = filepath.Join(t.TempDir(), "b.sock")
		s2, err := New(ctx, other)
		if err == nil {
			s2.Close()
			t.Fatal("second server opened the registry")
		}
		if !errors.Is(err, bolt.ErrLocked) || !strings.Contains(err.Error(), "locked") {
			t.Errorf("err = %v, want %v", err, bolt.ErrLocked)
		}
	})
	t.Run("fail/OpenOffline while the server runs", func(t *testing.T) {
		s2, err := OpenOffline(ctx, cfg)
		if err == nil {
			s2.Close()
			t.Fatal("OpenOffline opened the registry of a running server")
		}
		if !errors.Is(err, bolt.ErrLocked) {
			t.Errorf("err = %v, want %v", err, bolt.ErrLocked)
		}
	})
	t.Run("fail/second server on the same admin socket", func(t *testing.T) {
		other := testConfig(t)
		other.AdminSocket = cfg.AdminSocket
		s2, err := New(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		err = s2.Start(ctx)
		if err == nil || !strings.Contains(err.Error(), "another Embark is running") {
			t.Fatalf("Start: %v, want a refusal naming the running server", err)
		}
		// The running server keeps its socket.
		var st status
		if err := cl.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil || st.Registry.Devices != 3 {
			t.Fatalf("first server after the refusal: %+v, %v", st, err)
		}
	})

	if err := srv.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	if err := srv.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := os.Stat(sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("admin socket left behind: %v", err)
	}
	for _, p := range []string{
		config.Path(cfg.DataDir),
		filepath.Join(cfg.DataDir, RegistryFile),
		filepath.Join(cfg.DataDir, CADir, pki.RootCertFile),
		filepath.Join(cfg.DataDir, CADir, pki.RootKeyFile),
		filepath.Join(cfg.DataDir, CADir, pki.IntermediateCertFile),
		filepath.Join(cfg.DataDir, CADir, pki.IntermediateKeyFile),
	} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after Close: %v", err)
		}
	}
	if err := cl.Do(ctx, http.MethodGet, "/v1/status", nil, nil); err == nil {
		t.Error("the admin socket still answers after Close")
	}

	// Offline, the registry and the CA are those the server left.
	off, err := OpenOffline(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(off.CA().Root().Raw, root) {
		t.Error("the CA root changed")
	}
	var ost status
	if err := admin.InProcess(off.AdminHandler()).Do(ctx, http.MethodGet, "/v1/status", nil, &ost); err != nil {
		t.Fatal(err)
	}
	if ost.Registry.Devices != 3 || ost.Started != "" || len(ost.Listeners) != 0 {
		t.Errorf("offline status %+v", ost)
	}
	var d admin.DeviceDetail
	if err := admin.InProcess(off.AdminHandler()).Do(ctx, http.MethodGet, "/v1/devices/acme:ACME-000002", nil, &d); err != nil {
		t.Fatal(err)
	}
	if d.Device.State != device.Expected {
		t.Errorf("device %+v", d.Device)
	}
	if err := off.Close(); err != nil {
		t.Fatal(err)
	}

	// And a new server starts on the same directory.
	again := start(t, cfg)
	defer again.Close()
	if !bytes.Equal(again.CA().Root().Raw, root) {
		t.Error("the CA root changed")
	}
}

// A socket left by a killed server is replaced.
func TestStaleSocket(t *testing.T) {
	cfg := testConfig(t)
	ln, err := net.Listen("unix", cfg.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if m := mode(t, cfg.SocketPath()); m&fs.ModeSocket == 0 {
		t.Fatalf("no stale socket: %v", m)
	}
	srv := start(t, cfg)
	defer srv.Close()
	var st status
	if err := admin.DialSocket(cfg.SocketPath()).Do(context.Background(), http.MethodGet, "/v1/status", nil, &st); err != nil {
		t.Fatal(err)
	}
	if st.Listeners["admin"] != cfg.SocketPath() {
		t.Errorf("status %+v", st)
	}
}

// Start never deletes a file that is not a socket, whatever the
// configuration names as the admin socket.
func TestAdminSocketPathIsAFile(t *testing.T) {
	cfg := testConfig(t)
	cfg.AdminSocket = RegistryFile
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	err = srv.Start(context.Background())
	if err == nil {
		t.Error("Start listened on the registry file's path")
		// Let the admin server start before the deferred Close.
		_ = admin.DialSocket(cfg.SocketPath()).Do(context.Background(), http.MethodGet, "/v1/status", nil, nil)
	}
	if m := mode(t, filepath.Join(cfg.DataDir, RegistryFile)); !m.IsRegular() {
		t.Errorf("registry file replaced: mode %v", m)
	}
}

func TestCloseRightAfterStart(t *testing.T) {
	for range 30 {
		cfg := testConfig(t)
		srv, err := New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := srv.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
