package brokertest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/broker"
)

// Options configure StartMosquitto.
type Options struct {
	// ServerCert is the broker's certificate chain (leaf first) and key.
	// Clients must trust its issuer and name 127.0.0.1 or localhost.
	ServerCert tls.Certificate
	// DeviceCAs are trusted on the device listener: manufacturer roots and
	// Embark's root.
	DeviceCAs []*x509.Certificate
	// ServiceCA is trusted on the service listener.
	ServiceCA *x509.Certificate
	// ServiceName is the CN of the service certificate.
	ServiceName string
	// Manufacturers get IDevID patterns in the device ACL.
	Manufacturers []string
	// MaxPacketSize as in broker.MosquittoOptions.
	MaxPacketSize uint32
}

// InteropRequiredEnv, when set to 1, turns a missing Mosquitto into a test
// failure instead of a skip.
const InteropRequiredEnv = "EMBARK_INTEROP_REQUIRED"

const (
	startTimeout = 10 * time.Second
	stopTimeout  = 5 * time.Second
	attempts     = 3
)

// MosquittoPath returns the Mosquitto binary: /usr/sbin/mosquitto, else
// mosquitto from PATH, else "".
func MosquittoPath() string {
	if _, err := os.Stat("/usr/sbin/mosquitto"); err == nil {
		return "/usr/sbin/mosquitto"
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	return ""
}

// StartMosquitto starts Mosquitto for the test and returns the addresses of
// its device and service listeners ("127.0.0.1:port"). It stops Mosquitto
// when the test ends and logs Mosquitto's output if the test failed.
func StartMosquitto(t testing.TB, opts Options) (deviceAddr, serviceAddr string) {
	t.Helper()
	bin := MosquittoPath()
	if bin == "" {
		if os.Getenv(InteropRequiredEnv) == "1" {
			t.Fatalf("mosquitto not found and %s=1", InteropRequiredEnv)
		}
		t.Skip("mosquitto not installed")
	}
	dir := t.TempDir()
	mo := broker.MosquittoOptions{
		Bind:           "127.0.0.1",
		CertFile:       filepath.Join(dir, "server.crt"),
		KeyFile:        filepath.Join(dir, "server.key"),
		DeviceCAFile:   filepath.Join(dir, "device-ca.pem"),
		ServiceCAFile:  filepath.Join(dir, "service-ca.pem"),
		ACLFile:        filepath.Join(dir, "device.acl"),
		ServiceACLFile: filepath.Join(dir, "service.acl"),
		ServiceName:    opts.ServiceName,
		Manufacturers:  opts.Manufacturers,
		RunAsRoot:      os.Geteuid() == 0,
		MaxPacketSize:  opts.MaxPacketSize,
	}
	if err := writeFiles(mo, opts); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range attempts {
		dev, svc, err := freePorts()
		if err != nil {
			t.Fatal(err)
		}
		mo.DevicePort, mo.ServicePort = dev, svc
		if err := mo.Validate(); err != nil {
			t.Fatal(err)
		}
		conf, acl := broker.MosquittoConfig(mo)
		confFile := filepath.Join(dir, "mosquitto.conf")
		if err := writeAll(map[string]string{
			confFile:          conf,
			mo.ACLFile:        acl,
			mo.ServiceACLFile: broker.MosquittoServiceACL(mo),
		}, 0o600); err != nil {
			t.Fatal(err)
		}
		deviceAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(dev))
		serviceAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(svc))
		p, err := start(bin, confFile, deviceAddr, serviceAddr)
		if err == nil {
			t.Cleanup(func() {
				p.stop()
				if t.Failed() {
					t.Logf("mosquitto output:\n%s", p.output())
				}
			})
			return deviceAddr, serviceAddr
		}
		lastErr = err // most likely a port taken meanwhile: try others
	}
	t.Fatalf("start mosquitto: %v", lastErr)
	return "", ""
}

// process is a running Mosquitto.
type process struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{}
}

func start(bin, confFile, deviceAddr, serviceAddr string) (*process, error) {
	p := &process{out: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "-c", confFile)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	deadline := time.Now().Add(startTimeout)
	for _, addr := range []string{deviceAddr, serviceAddr} {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				_ = c.Close()
				break
			}
			select {
			case <-p.exited:
				return nil, fmt.Errorf("mosquitto exited: %s", p.output())
			default:
			}
			if time.Now().After(deadline) {
				p.stop()
				return nil, fmt.Errorf("mosquitto not listening on %s after %s: %s", addr, startTimeout, p.output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return p, nil
}

func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *process) output() string { return p.out.String() }

// freePorts returns two distinct loopback ports that were free a moment ago.
func freePorts() (int, int, error) {
	var ports []int
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, fmt.Errorf("free port: %w", err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports[0], ports[1], nil
}

func writeFiles(mo broker.MosquittoOptions, opts Options) error {
	if len(opts.ServerCert.Certificate) == 0 || opts.ServerCert.PrivateKey == nil {
		return errors.New("brokertest: Options.ServerCert has no certificate or key")
	}
	if len(opts.DeviceCAs) == 0 || opts.ServiceCA == nil {
		return errors.New("brokertest: Options needs DeviceCAs and ServiceCA")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(opts.ServerCert.PrivateKey)
	if err != nil {
		return fmt.Errorf("brokertest: server key: %w", err)
	}
	var chain, devCAs bytes.Buffer
	for _, der := range opts.ServerCert.Certificate {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	for _, c := range opts.DeviceCAs {
		_ = pem.Encode(&devCAs, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return writeAll(map[string]string{
		mo.CertFile:      chain.String(),
		mo.KeyFile:       string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
		mo.DeviceCAFile:  devCAs.String(),
		mo.ServiceCAFile: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: opts.ServiceCA.Raw})),
	}, 0o600)
}

func writeAll(files map[string]string, mode os.FileMode) error {
	for name, data := range files {
		if err := os.WriteFile(name, []byte(data), mode); err != nil {
			return fmt.Errorf("brokertest: %w", err)
		}
	}
	return nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
