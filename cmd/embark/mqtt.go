package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embark-iot/embark/pkg/broker"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pki"
)

// repeated collects a flag given several times.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// runMQTT: `embark mqtt mosquitto-config` writes a Mosquitto 2 setup for
// Embark: configuration, ACLs and certificate files.
func runMQTT(_ context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("mqtt")
	dir := fs.String("out", "", "directory to write the Mosquitto files to (created, 0700)")
	port := fs.Int("port", 8883, "device listener port")
	servicePort := fs.Int("service-port", 8884, "Embark's listener port")
	bind := fs.String("bind", "127.0.0.1", "address both listeners bind to (empty: all)")
	asRoot := fs.Bool("as-root", os.Geteuid() == 0, "add `user root` (Mosquitto started as root drops privileges otherwise)")
	var trust repeated
	fs.Var(&trust, "trust", "a manufacturer's trust bundle (trust.json): its roots and name go into the device listener (repeat)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "mosquitto-config" || *dir == "" {
		return fmt.Errorf("%w: mqtt mosquitto-config --out DIR --trust trust.json [--trust ...] [--port 8883 --service-port 8884 --bind ADDR]", errUsage)
	}
	if len(trust) == 0 {
		return fmt.Errorf("%w: mqtt mosquitto-config: at least one --trust bundle (IDevIDs must be verifiable)", errUsage)
	}
	cfg, err := server.Init(*data)
	if err != nil {
		return err
	}
	ca, err := pki.Load(filepath.Join(cfg.DataDir, server.CADir))
	if err != nil {
		return err
	}
	var deviceCAs bytes.Buffer
	writePEM(&deviceCAs, ca.Root())
	var names []string
	for _, path := range trust {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		t, err := manifest.ParseTrustBundle(b)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		names = append(names, t.Name)
		for _, r := range t.Roots {
			writePEM(&deviceCAs, r)
		}
	}
	svc, err := broker.LoadOrCreateService(filepath.Join(cfg.DataDir, server.MQTTDir), cfg.MQTT.ClientID)
	if err != nil {
		return err
	}
	srvCert, err := serverCertificate(ca, cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	mo := broker.MosquittoOptions{
		Bind: *bind, DevicePort: *port, ServicePort: *servicePort,
		CertFile: filepath.Join(abs, "server.crt"), KeyFile: filepath.Join(abs, "server.key"),
		DeviceCAFile: filepath.Join(abs, "device-ca.pem"), ServiceCAFile: filepath.Join(abs, "service-ca.pem"),
		ACLFile: filepath.Join(abs, "device.acl"), ServiceACLFile: filepath.Join(abs, "service.acl"),
		ServiceName: cfg.MQTT.ClientID, Manufacturers: names, RunAsRoot: *asRoot,
		MaxPacketSize: 20 << 10,
	}
	if err := mo.Validate(); err != nil {
		return err
	}
	conf, acl := broker.MosquittoConfig(mo)
	var chain, service bytes.Buffer
	for _, der := range srvCert.Certificate {
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	writePEM(&service, svc.CA)
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvCert.PrivateKey)
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
	}{
		{"mosquitto.conf", []byte(conf)},
		{"device.acl", []byte(acl)},
		{"service.acl", []byte(broker.MosquittoServiceACL(mo))},
		{"server.crt", chain.Bytes()},
		{"server.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})},
		{"device-ca.pem", deviceCAs.Bytes()},
		{"service-ca.pem", service.Bytes()},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(abs, f.name), f.data, 0o600); err != nil {
			return err
		}
	}
	host := *bind
	if host == "" {
		host = "localhost"
	}
	fmt.Fprintf(out, "wrote %s: mosquitto.conf, ACLs and certificates (manufacturers: %s)\n", abs, strings.Join(names, ", "))
	fmt.Fprintf(out, "start:   mosquitto -c %s\n", filepath.Join(abs, "mosquitto.conf"))
	fmt.Fprintf(out, "then set in %s:\n", config.Path(cfg.DataDir))
	fmt.Fprintf(out, "  \"mqtt\": {\"listen\": \"\", \"broker\": \"mqtts://%s\", \"client_id\": %q, ...}\n",
		net.JoinHostPort(host, fmt.Sprint(*servicePort)), cfg.MQTT.ClientID)
	fmt.Fprintf(out, "devices connect to mqtts://%s\n", net.JoinHostPort(host, fmt.Sprint(*port)))
	return nil
}

func writePEM(w io.Writer, c *x509.Certificate) {
	_ = pem.Encode(w, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// serverCertificate is the broker's certificate: Embark's server
// certificate for its configured names (the broker runs beside Embark and
// answers to the same names).
func serverCertificate(ca *pki.CA, cfg config.Config) (tls.Certificate, error) {
	var dns []string
	var ips []net.IP
	for _, n := range cfg.ServerNames {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	c, err := ca.ServerCertificate(dns, ips, 90*24*time.Hour)
	if err != nil {
		return tls.Certificate{}, err
	}
	if c.Leaf == nil {
		return tls.Certificate{}, errors.New("server certificate without its parsed leaf")
	}
	return c, nil
}
