package broker

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// Environment of the fleet helper process.
const (
	fleetEnvAddr = "EMBARK_BROKER_FLEET_ADDR"
	fleetEnvDir  = "EMBARK_BROKER_FLEET_DIR"
	fleetEnvN    = "EMBARK_BROKER_FLEET_N"
	// clientsEnv overrides the number of idle clients (default 10,000).
	clientsEnv = "EMBARK_BROKER_CLIENTS"
)

// BenchmarkIdleClients connects N idle TLS clients (10,000 unless
// EMBARK_BROKER_CLIENTS says otherwise) from a separate process, so that
// only the broker's memory is counted, and reports the broker process's
// resident memory per client (RSS growth after garbage collection) for the
// tuned settings and for mochi's defaults. Run it alone:
//
//	go test -run '^$' -bench IdleClients -benchtime 1x ./pkg/broker/
func BenchmarkIdleClients(b *testing.B) {
	if raceEnabled {
		b.Skip("memory figures are meaningless under the race detector")
	}
	n := 10000
	if s := os.Getenv(clientsEnv); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n <= 0 {
			b.Fatalf("%s=%q", clientsEnv, s)
		}
	}
	for _, v := range []struct {
		name string
		tune tuning
	}{
		{"tuned", defaultTuning},
		{"mochi-defaults", tuning{mochiDefaults: true, serviceReceiveMaximum: 1024}},
	} {
		b.Run(v.name, func(b *testing.B) {
			for range b.N {
				idleClients(b, n, v.tune)
			}
		})
	}
}

func idleClients(b *testing.B, n int, tune tuning) {
	dir := b.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleet CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		b.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	keyDER, _ := x509.MarshalPKCS8PrivateKey(caKey)
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		b.Fatal(err)
	}
	server := issueFrom(b, ca, caKey, "broker", "", true)

	// The Authenticator does what a real one does per CONNECT: verify the
	// leaf's signature and read the device URN from the URI SAN.
	auth := AuthenticatorFunc(func(chain []*x509.Certificate) (Identity, error) {
		if err := chain[0].CheckSignatureFrom(ca); err != nil {
			return Identity{}, err
		}
		if len(chain[0].URIs) != 1 {
			return Identity{}, errors.New("no device URN")
		}
		return Identity{Kind: KindLDevID, ID: chain[0].URIs[0].String()}, nil
	})
	br, err := newBroker(Config{Certificate: server, Auth: auth}, tune)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	if err := br.Serve(ln); err != nil {
		b.Fatal(err)
	}
	defer br.Close()

	rssBefore, heapBefore, stackBefore := settledMemory()
	start := time.Now()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFleetHelper$")
	cmd.Env = append(os.Environ(), fleetEnvAddr+"="+ln.Addr().String(), fleetEnvDir+"="+dir, fleetEnvN+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "READY") {
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
			if strings.HasPrefix(sc.Text(), "FAIL") {
				ready <- errors.New(sc.Text())
				return
			}
		}
		ready <- errors.New("fleet helper ended without READY")
	}()
	select {
	case err := <-ready:
		if err != nil {
			b.Fatal(err)
		}
	case <-time.After(10 * time.Minute):
		b.Fatal("fleet did not connect")
	}
	connect := time.Since(start)
	for br.Clients() != n {
		time.Sleep(10 * time.Millisecond)
	}
	rssAfter, heapAfter, stackAfter := settledMemory()
	perClient := func(after, before uint64) float64 { return (float64(after) - float64(before)) / float64(n) / 1024 }
	b.ReportMetric(perClient(rssAfter, rssBefore), "KiB-RSS/client")
	b.ReportMetric(perClient(heapAfter, heapBefore), "KiB-heap/client")
	b.ReportMetric(perClient(stackAfter, stackBefore), "KiB-stack/client")
	b.ReportMetric(float64(rssAfter)/(1<<20), "MiB-RSS-total")
	// CPU the broker spends with every client idle: mochi walks all clients
	// every second.
	const idle = 5 * time.Second
	cpu0 := cpuTime()
	time.Sleep(idle)
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(idle)*100, "%CPU-idle")
	b.ReportMetric(float64(runtime.NumGoroutine())/float64(n), "goroutines/client")
	b.ReportMetric(float64(n)/connect.Seconds(), "connects/s")
}

// settledMemory collects garbage, returns freed memory to the OS and reads
// the process's resident set and Go's heap and stack spans in use.
func settledMemory() (rss, heap, stack uint64) {
	for range 3 {
		runtime.GC()
	}
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap, stack = ms.HeapInuse, ms.StackInuse
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, heap, stack
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, heap, stack
		}
	}
	return 0, heap, stack
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func issueFrom(t testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn, uri string, server bool) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if uri != "" {
		u, _ := url.Parse(uri)
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// TestFleetHelper is the client side of BenchmarkIdleClients, run in a
// separate process. It connects the clients, prints READY and keeps them
// connected until its standard input closes.
func TestFleetHelper(t *testing.T) {
	addr := os.Getenv(fleetEnvAddr)
	if addr == "" {
		t.Skip("helper process for BenchmarkIdleClients")
	}
	fail := func(err error) {
		fmt.Println("FAIL", err)
		os.Exit(1)
	}
	dir := os.Getenv(fleetEnvDir)
	n, _ := strconv.Atoi(os.Getenv(fleetEnvN))
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		fail(err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	if err != nil {
		fail(err)
	}
	cb, _ := pem.Decode(caPEM)
	kb, _ := pem.Decode(keyPEM)
	ca, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		fail(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		fail(err)
	}
	caKey := k.(*ecdsa.PrivateKey)
	roots := x509.NewCertPool()
	roots.AddCert(ca)

	var (
		wg      sync.WaitGroup
		next    atomic.Int64
		failed  atomic.Value
		clients = make([]*paho.Client, n)
	)
	rm := uint16(4)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || failed.Load() != nil {
					return
				}
				id := fmt.Sprintf("urn:dev:embark:fleet:%06d", i)
				cert := issueFrom(t, ca, caKey, id, id, false)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				raw, err := (&tls.Dialer{Config: &tls.Config{
					RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert},
					CurvePreferences: []tls.CurveID{tls.X25519, tls.CurveP256},
				}}).DialContext(ctx, "tcp", addr)
				if err != nil {
					cancel()
					failed.Store(err)
					return
				}
				c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(raw), PacketTimeout: time.Minute})
				_, err = c.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 600, CleanStart: true,
					Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}})
				cancel()
				if err != nil {
					failed.Store(fmt.Errorf("client %d: %w", i, err))
					return
				}
				clients[i] = c
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		fail(err)
	}
	fmt.Println("READY")
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}
