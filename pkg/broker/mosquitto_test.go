package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/embark-iot/embark/pkg/broker"
	"github.com/embark-iot/embark/pkg/broker/brokertest"
)

// ca is a throwaway certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, n: 1}
}

func (c *ca) issue(t *testing.T, cn, uri string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c.n++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(c.n), Subject: pkix.Name{CommonName: cn},
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
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

type mqttClient struct {
	*paho.Client
	msgs chan *paho.Publish
}

func dial(t *testing.T, addr string, roots *x509.CertPool, cert tls.Certificate, clientID string) *mqttClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := (&tls.Dialer{Config: &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &mqttClient{msgs: make(chan *paho.Publish, 64)}
	c.Client = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(raw),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.msgs <- pr.Packet
			return true, nil
		}},
		PacketTimeout: 10 * time.Second,
	})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: clientID, KeepAlive: 60, CleanStart: true}); err != nil {
		t.Fatalf("connect %s: %v", clientID, err)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func (c *mqttClient) pub(t *testing.T, topic, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload)})
	if pr == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return pr.ReasonCode
}

func (c *mqttClient) sub(t *testing.T, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

func (c *mqttClient) expect(t *testing.T, topic, payload string) {
	t.Helper()
	select {
	case m := <-c.msgs:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("received %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no message on %s", topic)
	}
}

// TestMosquittoInterop runs the generated configuration on a real
// Mosquitto and checks what its ACL allows devices to do.
func TestMosquittoInterop(t *testing.T) {
	embark := newCA(t, "Embark Root")
	acme := newCA(t, "Acme Manufacturing Root")
	svc, err := broker.LoadOrCreateService(t.TempDir(), "embark")
	if err != nil {
		t.Fatal(err)
	}
	devAddr, svcAddr := brokertest.StartMosquitto(t, brokertest.Options{
		ServerCert:    embark.issue(t, "broker", "", true),
		DeviceCAs:     []*x509.Certificate{acme.cert, embark.cert},
		ServiceCA:     svc.CA,
		ServiceName:   svc.Name,
		Manufacturers: []string{"acme"},
	})
	roots := x509.NewCertPool()
	roots.AddCert(embark.cert)

	// The service's client identifier must be one no device certificate's
	// CN can take: the device listener sets client identifiers to the CN,
	// and identifiers are global across listeners.
	service := dial(t, svcAddr, roots, svc.Cert, "embark-service-7f3a")
	if rc := service.sub(t, "embark/v1/#"); rc != 1 {
		t.Fatalf("service subscribe: %#x", rc)
	}
	const (
		A = "urn:dev:embark:acme:A1"
		B = "urn:dev:embark:acme:B2"
	)
	nsA, nsB := broker.Namespace(A), broker.Namespace(B)
	ldevA := dial(t, devAddr, roots, embark.issue(t, A, "urn:dev:embark:acme:A1", false), A)
	idev := dial(t, devAddr, roots, acme.issue(t, "S1", "", false), "any-client-id")
	nsS1 := broker.Namespace(broker.DeviceURNPrefix + "acme:S1")
	sentinel := 0
	// refused publishes c to topic and checks that the service does not
	// receive it: Mosquitto answers PUBACK "not authorized" and drops it, and
	// the service's next message is a sentinel c publishes afterwards.
	refused := func(t *testing.T, c *mqttClient, topic, sentinelTopic string) {
		t.Helper()
		if rc := c.pub(t, topic, "refused"); rc != 0x87 {
			t.Fatalf("publish %s: reason %#x, want 0x87", topic, rc)
		}
		sentinel++
		payload := "sentinel-" + strings.Repeat("x", sentinel)
		if rc := c.pub(t, sentinelTopic, payload); rc != 0 {
			t.Fatalf("sentinel %s: %#x", sentinelTopic, rc)
		}
		service.expect(t, sentinelTopic, payload)
	}

	tests := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"ok/ldevid publishes its own renew", func(t *testing.T) {
			if rc := ldevA.pub(t, nsA+"/renew", "csr"); rc != 0 {
				t.Fatalf("reason %#x", rc)
			}
			service.expect(t, nsA+"/renew", "csr")
		}},
		{"fail/ldevid publishes into another device's namespace", func(t *testing.T) {
			refused(t, ldevA, nsB+"/renew", nsA+"/state")
		}},
		{"fail/ldevid publishes its own cmd", func(t *testing.T) {
			refused(t, ldevA, nsA+"/cmd", nsA+"/state")
		}},
		{"ok/ldevid receives only its own responses", func(t *testing.T) {
			// Mosquitto grants the subscription and filters each message.
			if rc := ldevA.sub(t, "embark/v1/#"); rc != 1 {
				t.Fatalf("subscribe: %#x", rc)
			}
			for _, topic := range []string{nsB + "/resp/1", nsA + "/resp/1"} {
				if rc := service.pub(t, topic, "cert"); rc != 0 {
					t.Fatalf("service publish %s: %#x", topic, rc)
				}
				service.expect(t, topic, "cert")
			}
			ldevA.expect(t, nsA+"/resp/1", "cert")
		}},
		{"ok/idevid with CN=serial publishes its enroll", func(t *testing.T) {
			if rc := idev.pub(t, nsS1+"/enroll", "csr"); rc != 0 {
				t.Fatalf("reason %#x", rc)
			}
			service.expect(t, nsS1+"/enroll", "csr")
		}},
		{"fail/idevid publishes another serial's enroll", func(t *testing.T) {
			refused(t, idev, broker.Namespace(broker.DeviceURNPrefix+"acme:S2")+"/enroll", nsS1+"/nonce")
		}},
		{"fail/idevid publishes for a manufacturer not listed", func(t *testing.T) {
			refused(t, idev, broker.Namespace(broker.DeviceURNPrefix+"other:S1")+"/enroll", nsS1+"/nonce")
		}},
		{"fail/idevid publishes renew", func(t *testing.T) {
			refused(t, idev, nsS1+"/renew", nsS1+"/nonce")
		}},
		{"fail/device certificate named like the service gets no service rights", func(t *testing.T) {
			imp := dial(t, devAddr, roots, acme.issue(t, svc.Name, "", false), svc.Name)
			if rc := imp.pub(t, nsA+"/cmd", "evil"); rc != 0x87 {
				t.Fatalf("reason %#x, want 0x87", rc)
			}
			refused(t, ldevA, nsA+"/cmd", nsA+"/state") // the service is still connected
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.run)
	}
}

func TestMosquittoConfigText(t *testing.T) {
	opts := broker.MosquittoOptions{
		DevicePort: 8883, ServicePort: 8884,
		CertFile: "/etc/embark/broker.crt", KeyFile: "/etc/embark/broker.key",
		DeviceCAFile: "/etc/embark/device-ca.pem", ServiceCAFile: "/etc/embark/service-ca.crt",
		ACLFile: "/etc/embark/device.acl", ServiceACLFile: "/etc/embark/service.acl",
		ServiceName: "embark", Manufacturers: []string{"acme", "bad name\npattern readwrite #"},
	}
	if err := opts.Validate(); err == nil || !strings.Contains(err.Error(), "manufacturer name") {
		t.Fatalf("Validate: %v, want a manufacturer name error", err)
	}
	conf, acl := broker.MosquittoConfig(opts)
	for _, want := range []string{
		"per_listener_settings true\n", "listener 8883\n", "listener 8884\n",
		"require_certificate true\n", "use_identity_as_username true\n", "use_username_as_clientid true\n",
		"acl_file /etc/embark/device.acl\n", "acl_file /etc/embark/service.acl\n", "tls_version tlsv1.2\n",
	} {
		if !strings.Contains(conf, want) {
			t.Errorf("config lacks %q:\n%s", want, conf)
		}
	}
	if strings.Contains(conf, "user root") {
		t.Error("user root without RunAsRoot")
	}
	if strings.Count(conf, "use_username_as_clientid") != 1 {
		t.Error("use_username_as_clientid must be on the device listener only")
	}
	for _, want := range []string{
		"pattern write embark/v1/%u/renew\n", "pattern read embark/v1/%u/cmd\n",
		"pattern write embark/v1/urn:dev:embark:acme:%u/enroll\n",
	} {
		if !strings.Contains(acl, want) {
			t.Errorf("ACL lacks %q:\n%s", want, acl)
		}
	}
	if strings.Contains(acl, "bad name") || strings.Contains(acl, "readwrite") || strings.Contains(acl, "user ") {
		t.Errorf("device ACL has an invalid manufacturer or a user entry:\n%s", acl)
	}
	if got := broker.MosquittoServiceACL(opts); got != "# Embark service ACL (generated).\nuser embark\ntopic readwrite embark/v1/#\n" {
		t.Errorf("service ACL:\n%s", got)
	}
}

func TestMosquittoOptionsValidate(t *testing.T) {
	ok := broker.MosquittoOptions{
		DevicePort: 1, ServicePort: 2, CertFile: "c", KeyFile: "k", DeviceCAFile: "d", ServiceCAFile: "s",
		ACLFile: "a", ServiceACLFile: "b", ServiceName: "embark", Manufacturers: []string{"acme"},
	}
	tests := []struct {
		name   string
		mutate func(*broker.MosquittoOptions)
		want   string
	}{
		{"ok/valid", func(*broker.MosquittoOptions) {}, ""},
		{"fail/same ports", func(o *broker.MosquittoOptions) { o.ServicePort = 1 }, "ports are equal"},
		{"fail/port out of range", func(o *broker.MosquittoOptions) { o.DevicePort = 70000 }, "device port 70000"},
		{"fail/path with space", func(o *broker.MosquittoOptions) { o.KeyFile = "a b" }, "KeyFile"},
		{"fail/path with newline", func(o *broker.MosquittoOptions) { o.CertFile = "a\nuser root" }, "CertFile"},
		{"fail/empty path", func(o *broker.MosquittoOptions) { o.DeviceCAFile = "" }, "DeviceCAFile"},
		{"fail/one ACL file for both", func(o *broker.MosquittoOptions) { o.ServiceACLFile = "a" }, "same file"},
		{"fail/service name", func(o *broker.MosquittoOptions) { o.ServiceName = "Embark Service" }, "service name"},
		{"fail/manufacturer with colon", func(o *broker.MosquittoOptions) { o.Manufacturers = []string{"a:b"} }, "manufacturer name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.mutate(&o)
			err := o.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, broker.ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
}
