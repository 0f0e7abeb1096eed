package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/mqttwire"
)

// mqttDevice is a factory device speaking MQTT to one Embark.
type mqttDevice struct {
	t   *testing.T
	e   *embark
	fd  factory.Device
	id  string
	key *ecdsa.PrivateKey // the LDevID key
	cur *mqttclient.Issued
}

func mqttDevices(t *testing.T, e *embark, dir string) []*mqttDevice {
	t.Helper()
	devs, err := factory.ReadDevices(filepath.Join(dir, "devices.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*mqttDevice, len(devs))
	for i, d := range devs {
		out[i] = &mqttDevice{t: t, e: e, fd: d, id: device.ID("acme", d.Serial)}
	}
	return out
}

func (d *mqttDevice) target() string {
	return (&url.URL{Scheme: "mqtts", Host: d.e.mqttAddr}).String()
}

// dial connects with the IDevID (ldevid false) or the current LDevID.
func (d *mqttDevice) dial(ctx context.Context, ldevid, commands bool) (*mqttclient.Conn, error) {
	cert := tls.Certificate{PrivateKey: d.fd.Key}
	for _, c := range d.fd.Chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	if ldevid {
		cert = tls.Certificate{PrivateKey: d.key, Certificate: [][]byte{d.cur.Certificate.Raw, d.cur.Chain[0].Raw}}
	}
	return mqttclient.Dial(ctx, mqttclient.Config{Target: d.target(), Roots: d.e.rootPool(), Certificate: cert,
		DeviceID: d.id, Timeout: 10 * time.Second, Commands: commands})
}

func csrFor(t *testing.T, serial string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: serial}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return k, der
}

// enroll connects with the IDevID and enrolls a new key.
func (d *mqttDevice) enroll(ctx context.Context) error {
	c, err := d.dial(ctx, false, false)
	if err != nil {
		return err
	}
	defer c.Close()
	k, csr := csrFor(d.t, d.fd.Serial)
	iss, err := c.Enroll(ctx, csr, nil)
	if err != nil {
		return err
	}
	if err := iss.Verify(d.e.rootPool(), &k.PublicKey, d.id, time.Now()); err != nil {
		return err
	}
	d.key, d.cur = k, iss
	return nil
}

// renew connects with the LDevID and renews with a new key.
func (d *mqttDevice) renew(ctx context.Context, c *mqttclient.Conn) error {
	k, csr := csrFor(d.t, d.fd.Serial)
	iss, err := c.Renew(ctx, csr, nil)
	if err != nil {
		return err
	}
	if err := iss.Verify(d.e.rootPool(), &k.PublicKey, d.id, time.Now()); err != nil {
		return err
	}
	d.key, d.cur = k, iss
	return nil
}

// mqttReason returns the reason code of an MQTT refusal, or the error.
func mqttReason(err error) string {
	var se *mqttclient.StatusError
	if errors.As(err, &se) {
		return se.Reason
	}
	return fmt.Sprint(err)
}

// Enroll with the IDevID, renew with the LDevID, obey a rotate command; once
// revoked, the device cannot renew and is told so — and, on the embedded
// broker, loses its connection at once and cannot reconnect.
func TestMQTTLifecycle(t *testing.T) {
	for _, k := range brokerKinds {
		t.Run(string(k), func(t *testing.T) { testMQTTLifecycle(t, k) })
	}
}

func testMQTTLifecycle(t *testing.T, k brokerKind) {
	dir := mint(t, 3, 0)
	e := startEmbarkMQTT(t, k, dir)
	e.trustAndImport(t, dir)
	devs := mqttDevices(t, e, dir)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d := devs[0]
	if err := d.enroll(ctx); err != nil {
		t.Fatalf("enroll: %v", err)
	}
	first := d.cur.Certificate

	c, err := d.dial(ctx, true, true)
	if err != nil {
		t.Fatalf("connect with the LDevID: %v", err)
	}
	defer c.Close()
	if err := d.renew(ctx, c); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if d.cur.Certificate.SerialNumber.Cmp(first.SerialNumber) == 0 {
		t.Fatal("renewal returned the same certificate")
	}

	// Rotate: the device gets the signed command, renews with a new key and
	// reports the generation; Embark records it.
	var desired desired.Desired
	if err := e.client.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(d.id)+"/rotate",
		[]byte(`{"campaign":"test"}`), &desired); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	var cmd = waitCommand(t, c)
	if !cmd.Rotate || cmd.Generation != desired.Generation || cmd.Device != d.id {
		t.Fatalf("command %+v, want rotate generation %d for %s", cmd, desired.Generation, d.id)
	}
	before := d.cur.Certificate
	if err := d.renew(ctx, c); err != nil {
		t.Fatalf("renew on command: %v", err)
	}
	if err := c.ReportState(ctx, cmd.Generation); err != nil {
		t.Fatalf("report state: %v", err)
	}
	if err := e.client.Do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(d.id)+"/desired", nil, &desired); err != nil {
		t.Fatal(err)
	}
	if desired.Applied != cmd.Generation {
		t.Fatalf("applied generation %d, want %d", desired.Applied, cmd.Generation)
	}
	if d.cur.Certificate.Equal(before) {
		t.Fatal("rotation did not re-key")
	}
	c.Close()

	// Revocation: the device is told (a signed command), its renewals are
	// refused; the embedded broker also cuts its live connection within a
	// second and refuses it from then on.
	live, err := d.dial(ctx, true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	if cmd := waitCommand(t, live); cmd.Generation != desired.Generation {
		t.Fatalf("retained command generation %d, want %d", cmd.Generation, desired.Generation)
	}
	if err := e.client.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(d.id)+"/revoke",
		[]byte(`{"reason":"stolen"}`), nil); err != nil {
		t.Fatal(err)
	}
	if k == embedded {
		select {
		case <-live.Done():
		case <-time.After(time.Second):
			t.Fatal("the revoked device's broker connection is still up after 1s")
		}
		if c, err := d.dial(ctx, true, false); err == nil {
			c.Close()
			t.Fatal("a revoked LDevID connected to the broker")
		}
	} else {
		if cmd := waitCommand(t, live); !cmd.Revoked {
			t.Fatalf("command after revocation %+v, want revoked", cmd)
		}
		if err := d.renew(ctx, live); mqttReason(err) != "revoked" {
			t.Fatalf("renew after revocation: %v, want reason revoked", err)
		}
	}
	// The other devices are unaffected.
	if err := devs[1].enroll(ctx); err != nil {
		t.Fatalf("another device: %v", err)
	}
}

func waitCommand(t *testing.T, c *mqttclient.Conn) (cmd mqttwire.Command) {
	t.Helper()
	select {
	case cmd = <-c.Commands():
		return cmd
	case <-time.After(10 * time.Second):
		t.Fatal("no command within 10s")
	}
	return cmd
}
