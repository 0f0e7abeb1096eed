package e2e

import (
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/broker"
	"github.com/embark-iot/embark/pkg/broker/brokertest"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pki"
)

// brokerKind names where devices connect: Embark's embedded broker or a
// Mosquitto started by the test, to which Embark connects as a client.
type brokerKind string

const (
	embedded  brokerKind = "embedded"
	mosquitto brokerKind = "mosquitto"
)

var brokerKinds = []brokerKind{embedded, mosquitto}

// startEmbarkMQTT starts Embark with the broker of kind k and returns it
// with the address devices connect to. Mosquitto trusts the manufacturer
// of factoryDir.
func startEmbarkMQTT(t *testing.T, k brokerKind, factoryDir string, opts ...server.Option) *embark {
	t.Helper()
	if k == embedded {
		e := startEmbarkWith(t, nil, opts...)
		e.mqttAddr = e.srv.MQTTAddr().String()
		return e
	}
	// Mosquitto needs Embark's root, its server certificate and the service
	// CA before Embark starts: make them in the data directory first.
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := server.Init(dir); err != nil {
		t.Fatal(err)
	}
	ca, err := pki.Load(filepath.Join(dir, server.CADir))
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.ServerCertificate(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := broker.LoadOrCreateService(filepath.Join(dir, server.MQTTDir), "embark")
	if err != nil {
		t.Fatal(err)
	}
	devAddr, svcAddr := brokertest.StartMosquitto(t, brokertest.Options{
		ServerCert:    srvCert,
		DeviceCAs:     []*x509.Certificate{ca.Root(), readCert(t, filepath.Join(factoryDir, factory.RootCertFile))},
		ServiceCA:     svc.CA,
		ServiceName:   "embark",
		Manufacturers: []string{"acme"},
		MaxPacketSize: 20 << 10,
	})
	e := startEmbarkDir(t, dir, func(c *config.Config) {
		c.MQTT.Listen, c.MQTT.Broker = "", "mqtts://"+svcAddr
	}, opts...)
	e.mqttAddr = devAddr
	select {
	case <-e.srv.MQTT().Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("Embark did not connect to Mosquitto within 10s")
	}
	return e
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM", path)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
