package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

const (
	devA = "urn:dev:embark:acme:A1"
	devB = "urn:dev:embark:acme:B2"
)

// Reason codes the tests expect.
const (
	rcNotAuthorized      = 0x87
	rcClientIDNotValid   = 0x85
	rcAdministrative     = 0x98
	rcSessionTakenOver   = 0x8e
	rcGrantedQoS1        = 0x01
	rcUnsupportedVersion = 0x01 // v3.1.1 CONNACK return code
)

func TestBroker(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, e *env)
	}{
		{"ok/idevid can publish enroll and subscribe resp", func(t *testing.T, e *env) {
			svc := e.service(t)
			dev := e.mustDial(t, e.identity(t, KindIDevID, devA), devA)
			if got := trySubscribe(t, dev, ns(devA)+"/resp", ns(devA)+"/resp/#"); string(got) != "\x01\x01" {
				t.Fatalf("SUBACK %x, want 0101", got)
			}
			mustPublish(t, dev, ns(devA)+"/nonce", "n")
			mustPublish(t, dev, ns(devA)+"/enroll", "csr")
			expectNext(t, svc, ns(devA)+"/nonce", "n")
			expectNext(t, svc, ns(devA)+"/enroll", "csr")
			mustPublish(t, svc, ns(devA)+"/resp/7", "cert")
			expectNext(t, dev, ns(devA)+"/resp/7", "cert")
		}},
		{"fail/idevid cannot publish renew", func(t *testing.T, e *env) {
			svc := e.service(t)
			dev := e.mustDial(t, e.identity(t, KindIDevID, devA), devA)
			for _, topic := range []string{ns(devA) + "/renew", ns(devA) + "/state", ns(devA) + "/cmd", ns(devA) + "/resp"} {
				if code := publish(t, dev, topic, "x", false); code != rcNotAuthorized {
					t.Errorf("publish %s: reason %#x, want %#x", topic, code, rcNotAuthorized)
				}
			}
			mustPublish(t, dev, ns(devA)+"/nonce", "sentinel")
			expectNext(t, svc, ns(devA)+"/nonce", "sentinel")
		}},
		{"fail/idevid cannot publish another device's enroll", func(t *testing.T, e *env) {
			svc := e.service(t)
			dev := e.mustDial(t, e.identity(t, KindIDevID, devA), devA)
			if code := publish(t, dev, ns(devB)+"/enroll", "x", false); code != rcNotAuthorized {
				t.Fatalf("reason %#x, want %#x", code, rcNotAuthorized)
			}
			if got := trySubscribe(t, dev, ns(devB)+"/resp/#"); got[0] != rcNotAuthorized {
				t.Fatalf("subscribe to another device's resp: %x", got)
			}
			mustPublish(t, dev, ns(devA)+"/enroll", "sentinel")
			expectNext(t, svc, ns(devA)+"/enroll", "sentinel")
		}},
		{"fail/ldevid cannot publish cmd even with zone topic embark/v1/<id>/#", func(t *testing.T, e *env) {
			svc := e.service(t)
			dev := e.mustDial(t, e.identity(t, KindLDevID, devA, ns(devA)+"/#"), devA)
			for _, topic := range []string{ns(devA) + "/cmd", ns(devA) + "/resp", ns(devA) + "/resp/1", ns(devA) + "/enroll", ns(devA) + "/cmd/x"} {
				if code := publish(t, dev, topic, "x", false); code != rcNotAuthorized {
					t.Errorf("publish %s: reason %#x, want %#x", topic, code, rcNotAuthorized)
				}
			}
			mustPublish(t, dev, ns(devA)+"/renew", "r")
			mustPublish(t, dev, ns(devA)+"/status", "zone")
			expectNext(t, svc, ns(devA)+"/renew", "r")
			expectNext(t, svc, ns(devA)+"/status", "zone")
		}},
		{"fail/device cannot subscribe embark/v1/#", func(t *testing.T, e *env) {
			dev := e.mustDial(t, e.identity(t, KindLDevID, devA, ns(devA)+"/#", "plant/#"), devA)
			filters := []string{"embark/v1/#", "#", "+/v1/+/cmd", ns(devA) + "/#", "$SYS/#", ns(devB) + "/cmd", "plant/#"}
			got := trySubscribe(t, dev, filters...)
			want := []byte{rcNotAuthorized, rcNotAuthorized, rcNotAuthorized, rcNotAuthorized, rcNotAuthorized, rcNotAuthorized, rcGrantedQoS1}
			if string(got) != string(want) {
				t.Fatalf("SUBACK for %q = %x, want %x", filters, got, want)
			}
		}},
		{"fail/client id differs from identity", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, devA)
			_, ca, err := e.dial(t, &cert, &paho.Connect{ClientID: devB, CleanStart: true})
			if err == nil || ca == nil || ca.ReasonCode != rcClientIDNotValid {
				t.Fatalf("connect: %v, CONNACK %+v; want reason %#x", err, ca, rcClientIDNotValid)
			}
			logHas(t, e, "mqtt connection refused", "client identifier must equal the certificate identity")
			if n := e.b.Clients(); n != 0 {
				t.Fatalf("Clients() = %d", n)
			}
		}},
		{"fail/no client certificate", func(t *testing.T, e *env) {
			_, _, err := e.dial(t, nil, &paho.Connect{ClientID: devA, CleanStart: true})
			if err == nil {
				t.Fatal("connected without a client certificate")
			}
			logHas(t, e, "mqtt connection refused", "tls handshake failed")
			if n := e.b.Clients(); n != 0 {
				t.Fatalf("Clients() = %d", n)
			}
		}},
		{"fail/Authenticate error", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, devA)
			e.auth.fail(cert, errors.New("certificate revoked (superseded)"))
			_, ca, err := e.dial(t, &cert, &paho.Connect{ClientID: devA, CleanStart: true})
			if err == nil || ca == nil || ca.ReasonCode != rcNotAuthorized {
				t.Fatalf("connect: %v, CONNACK %+v; want reason %#x", err, ca, rcNotAuthorized)
			}
			if strings.Contains(ca.Properties.ReasonString, "revoked") {
				t.Fatalf("CONNACK tells the client the Authenticator's reason: %q", ca.Properties.ReasonString)
			}
			logHas(t, e, "certificate not accepted", "certificate revoked (superseded)")
		}},
		{"fail/certificate from another CA", func(t *testing.T, e *env) {
			other := newTestPKI(t, "Other CA")
			cert := other.leaf(t, devA, "", false)
			_, ca, err := e.dial(t, &cert, &paho.Connect{ClientID: devA, CleanStart: true})
			if err == nil || ca == nil || ca.ReasonCode != rcNotAuthorized {
				t.Fatalf("connect: %v, CONNACK %+v; want reason %#x", err, ca, rcNotAuthorized)
			}
			logHas(t, e, "untrusted certificate")
		}},
		{"ok/Disconnect drops a live client", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, devA)
			dev := e.mustDial(t, cert, devA)
			other := e.mustDial(t, e.identity(t, KindLDevID, devB), devB)
			waitClients(t, e.b, 2)
			if n := e.b.Disconnect("00" + strings.ToUpper(cert.Leaf.SerialNumber.Text(16))); n != 1 {
				t.Fatalf("Disconnect = %d, want 1", n)
			}
			if rc := waitDisconnect(t, dev); rc != rcAdministrative {
				t.Fatalf("DISCONNECT reason %#x, want %#x", rc, rcAdministrative)
			}
			if n := e.b.Clients(); n != 1 {
				t.Fatalf("Clients() = %d after Disconnect, want 1", n)
			}
			if n := e.b.Disconnect(cert.Leaf.SerialNumber.Text(16)); n != 0 {
				t.Fatalf("second Disconnect = %d, want 0", n)
			}
			mustPublish(t, other, ns(devB)+"/state", "still here")
		}},
		{"ok/Refresh applies new topics and disconnects on error", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, devA)
			dev := e.mustDial(t, cert, devA)
			if got := trySubscribe(t, dev, "plant/alarms"); got[0] != rcNotAuthorized {
				t.Fatalf("subscribe before zone grant: %x", got)
			}
			e.auth.set(cert, Identity{Kind: KindLDevID, ID: devA, Topics: []string{"plant/alarms"}})
			e.b.Refresh(devA)
			if got := trySubscribe(t, dev, "plant/alarms"); got[0] != rcGrantedQoS1 {
				t.Fatalf("subscribe after Refresh: %x", got)
			}
			mustPublish(t, dev, "plant/alarms", "fire")
			expectNext(t, dev, "plant/alarms", "fire")

			e.auth.fail(cert, errors.New("certificate revoked"))
			e.b.Refresh(devA)
			if rc := waitDisconnect(t, dev); rc != rcNotAuthorized {
				t.Fatalf("DISCONNECT reason %#x, want %#x", rc, rcNotAuthorized)
			}
			waitClients(t, e.b, 0)
			logHas(t, e, "mqtt client disconnected on refresh", "certificate revoked")
		}},
		{"ok/Refresh narrowing stops delivery on existing subscriptions", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, devA, "plant/#")
			dev := e.mustDial(t, cert, devA)
			pub := e.mustDial(t, e.identity(t, KindLDevID, devB, "plant/#"), devB)
			subscribe(t, dev, "plant/#", ns(devA)+"/cmd")
			e.auth.set(cert, Identity{Kind: KindLDevID, ID: devA, Topics: []string{"plant/alarms"}})
			e.b.Refresh(devA)
			mustPublish(t, pub, "plant/doors", "open")
			mustPublish(t, pub, "plant/alarms", "fire")
			expectNext(t, dev, "plant/alarms", "fire")
		}},
		{"fail/retained publish by a device", func(t *testing.T, e *env) {
			svc := e.service(t)
			dev := e.rawDial(t, e.identity(t, KindLDevID, devA, "plant/#"), devA)
			for i, topic := range []string{ns(devA) + "/state", "plant/alarms"} {
				if code := dev.publish(t, uint16(i+1), topic, "retained", true); code != rcNotAuthorized {
					t.Errorf("retained publish %s: reason %#x, want %#x", topic, code, rcNotAuthorized)
				}
			}
			// QoS 0 is dropped silently.
			p := &packets.Publish{Topic: ns(devA) + "/state", Payload: []byte("retained0"), Retain: true}
			if _, err := p.WriteTo(dev.conn); err != nil {
				t.Fatal(err)
			}
			if code := dev.publish(t, 9, ns(devA)+"/state", "sentinel", false); code != 0 {
				t.Fatalf("sentinel: %#x", code)
			}
			expectNext(t, svc, ns(devA)+"/state", "sentinel")
			// Nothing was retained: a new subscriber gets only a new message.
			late := e.mustDial(t, e.identity(t, KindService, "embark-2"), "embark-2")
			subscribe(t, late, ns(devA)+"/state")
			lateDev := e.mustDial(t, e.identity(t, KindLDevID, devB, "plant/#"), devB)
			subscribe(t, lateDev, "plant/alarms")
			if code := dev.publish(t, 10, ns(devA)+"/state", "after", false); code != 0 {
				t.Fatalf("after: %#x", code)
			}
			if code := dev.publish(t, 11, "plant/alarms", "after", false); code != 0 {
				t.Fatalf("after: %#x", code)
			}
			if m := expectNext(t, late, ns(devA)+"/state", "after"); m.Retain {
				t.Fatal("message flagged retained")
			}
			if m := expectNext(t, lateDev, "plant/alarms", "after"); m.Retain {
				t.Fatal("message flagged retained")
			}
		}},
		{"fail/device cannot use $share or $SYS", func(t *testing.T, e *env) {
			dev := e.rawDial(t, e.identity(t, KindLDevID, devA, "#"), devA)
			got := dev.subscribe(t, 1, "$share/g/"+ns(devA)+"/resp", "$share/g/plant/#", "$SYS/#", "$SYS/broker/clients/connected", "plant/#")
			if want := []byte{rcNotAuthorized, rcNotAuthorized, rcNotAuthorized, rcNotAuthorized, rcGrantedQoS1}; string(got) != string(want) {
				t.Fatalf("SUBACK %x, want %x", got, want)
			}
			if code := dev.publish(t, 2, "$share/g/plant/x", "x", false); code < 0x80 {
				t.Fatalf("publish to $share accepted: %#x", code)
			}
		}},
		{"ok/service retained cmd reaches the device on subscribe", func(t *testing.T, e *env) {
			svc := e.service(t)
			if code := publish(t, svc, ns(devA)+"/cmd", "desired-1", true); code != 0 {
				t.Fatalf("service retained publish: %#x", code)
			}
			dev := e.mustDial(t, e.identity(t, KindLDevID, devA), devA)
			subscribe(t, dev, ns(devA)+"/cmd")
			expectNext(t, dev, ns(devA)+"/cmd", "desired-1")
		}},
		{"ok/service with a small receive maximum keeps receiving", func(t *testing.T, e *env) {
			cert := e.identity(t, KindService, "embark")
			rm := uint16(2)
			svc, _, err := e.dial(t, &cert, &paho.Connect{ClientID: "embark", CleanStart: true,
				Properties: &paho.ConnectProperties{ReceiveMaximum: &rm}})
			if err != nil {
				t.Fatal(err)
			}
			subscribe(t, svc, "embark/v1/+/state")
			dev := e.mustDial(t, e.identity(t, KindLDevID, devA), devA)
			const n = 50 // mochi's own flow control stalls after about 2*rm
			for i := range n {
				mustPublish(t, dev, ns(devA)+"/state", strconv.Itoa(i))
			}
			for i := range n {
				expectNext(t, svc, ns(devA)+"/state", strconv.Itoa(i))
			}
		}},
		{"fail/service cannot leave embark/v1", func(t *testing.T, e *env) {
			svc := e.service(t)
			if code := publish(t, svc, "plant/alarms", "x", false); code != rcNotAuthorized {
				t.Fatalf("publish outside embark/v1: %#x", code)
			}
			got := trySubscribe(t, svc, "#", "$SYS/#", "$share/g/embark/v1/+/enroll", "$share/g/#")
			if want := []byte{rcNotAuthorized, rcNotAuthorized, rcGrantedQoS1, rcNotAuthorized}; string(got) != string(want) {
				t.Fatalf("SUBACK %x, want %x", got, want)
			}
		}},
		{"ok/service shared subscription receives requests", func(t *testing.T, e *env) {
			svc := e.mustDial(t, e.identity(t, KindService, "embark"), "embark")
			subscribe(t, svc, "$share/embark/embark/v1/+/enroll")
			dev := e.mustDial(t, e.identity(t, KindIDevID, devA), devA)
			mustPublish(t, dev, ns(devA)+"/enroll", "csr")
			expectNext(t, svc, ns(devA)+"/enroll", "csr")
		}},
		{"fail/will on a topic the device may not write", func(t *testing.T, e *env) {
			for _, w := range []*paho.WillMessage{
				{Topic: ns(devA) + "/cmd", Payload: []byte("x")},
				{Topic: ns(devA) + "/status", Payload: []byte("x"), Retain: true},
			} {
				cert := e.identity(t, KindLDevID, devA, ns(devA)+"/status")
				_, ca, err := e.dial(t, &cert, &paho.Connect{ClientID: devA, CleanStart: true, WillMessage: w})
				if err == nil || ca == nil || ca.ReasonCode != rcNotAuthorized {
					t.Fatalf("will %+v: %v, CONNACK %+v", w, err, ca)
				}
			}
		}},
		{"ok/will of a dropped client is not published", func(t *testing.T, e *env) {
			svc := e.service(t)
			cert := e.identity(t, KindLDevID, devA, ns(devA)+"/status")
			dev, _, err := e.dial(t, &cert, &paho.Connect{ClientID: devA, CleanStart: true,
				WillMessage: &paho.WillMessage{Topic: ns(devA) + "/status", Payload: []byte("offline"), QoS: 1}})
			if err != nil {
				t.Fatal(err)
			}
			e.b.Disconnect(cert.Leaf.SerialNumber.Text(16))
			waitClosed(t, dev)
			waitClients(t, e.b, 1)
			other := e.mustDial(t, e.identity(t, KindLDevID, devB), devB)
			mustPublish(t, other, ns(devB)+"/state", "sentinel")
			expectNext(t, svc, ns(devB)+"/state", "sentinel")
		}},
		{"ok/takeover by the same identity keeps the new connection's state", func(t *testing.T, e *env) {
			svc := e.service(t)
			cert := e.identity(t, KindLDevID, devA)
			first := e.mustDial(t, cert, devA)
			second := e.mustDial(t, cert, devA)
			if rc := waitDisconnect(t, first); rc != rcSessionTakenOver {
				t.Fatalf("first connection: DISCONNECT reason %#x", rc)
			}
			waitClients(t, e.b, 2) // service + second
			mustPublish(t, second, ns(devA)+"/state", "second")
			expectNext(t, svc, ns(devA)+"/state", "second")
		}},
		{"fail/oversized packet closes the connection", func(t *testing.T, e *env) {
			dev := e.mustDial(t, e.identity(t, KindLDevID, devA), devA)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, _ = dev.Publish(ctx, &paho.Publish{Topic: ns(devA) + "/state", Payload: make([]byte, DefaultMaxPacketSize+1)})
			waitClosed(t, dev)
			waitClients(t, e.b, 0)
		}},
		{"ok/connack announces the device's limits", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, devA)
			sei := uint32(3600)
			_, ca, err := e.dial(t, &cert, &paho.Connect{ClientID: devA, CleanStart: true,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &sei}})
			if err != nil {
				t.Fatal(err)
			}
			p := ca.Properties
			if p.RetainAvailable || p.SharedSubAvailable || p.MaximumPacketSize == nil || *p.MaximumPacketSize != DefaultMaxPacketSize ||
				p.MaximumQoS == nil || *p.MaximumQoS != 1 || p.SessionExpiryInterval == nil || *p.SessionExpiryInterval != 0 {
				t.Fatalf("device CONNACK properties %+v", p)
			}
			scert := e.identity(t, KindService, "embark")
			_, sca, err := e.dial(t, &scert, &paho.Connect{ClientID: "embark", CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			if sp := sca.Properties; !sp.RetainAvailable || !sp.SharedSubAvailable || sp.ReceiveMaximum == nil || *sp.ReceiveMaximum != 65535 {
				t.Fatalf("service CONNACK properties %+v", sp)
			}
		}},
		{"fail/mqtt v3.1.1 client", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, devA)
			c, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pki.pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			id := []byte(devA)
			body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}, id...)
			if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			ack := make([]byte, 4)
			if _, err := io.ReadFull(c, ack); err != nil {
				t.Fatal(err)
			}
			if string(ack) != string([]byte{0x20, 2, 0, rcUnsupportedVersion}) {
				t.Fatalf("CONNACK % x, want 20 02 00 01", ack)
			}
			logHas(t, e, "mqtt connection refused", "unsupported protocol version")
			if n := e.b.Clients(); n != 0 {
				t.Fatalf("Clients() = %d", n)
			}
		}},
		{"ok/Close disconnects every client", func(t *testing.T, e *env) {
			dev := e.mustDial(t, e.identity(t, KindLDevID, devA), devA)
			if err := e.b.Close(); err != nil {
				t.Fatal(err)
			}
			if rc := waitDisconnect(t, dev); rc != 0x8b {
				t.Fatalf("DISCONNECT reason %#x, want 0x8b (server shutting down)", rc)
			}
			if n := e.b.Clients(); n != 0 {
				t.Fatalf("Clients() = %d after Close", n)
			}
		}},
		{"ok/Serve on a second listener", func(t *testing.T, e *env) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if err := e.b.Serve(ln); err != nil {
				t.Fatal(err)
			}
			svc := e.service(t)
			cert := e.identity(t, KindIDevID, devA)
			dev, _, err := dialTLS(t, ln.Addr().String(), e.pki.pool, &cert, &paho.Connect{ClientID: devA, CleanStart: true})
			if err != nil {
				t.Fatal(err)
			}
			mustPublish(t, dev, ns(devA)+"/enroll", "csr")
			expectNext(t, svc, ns(devA)+"/enroll", "csr")
		}},
		{"fail/identity that is not a topic level", func(t *testing.T, e *env) {
			cert := e.identity(t, KindLDevID, "urn:dev:embark:acme:a/b")
			_, ca, err := e.dial(t, &cert, &paho.Connect{ClientID: "urn:dev:embark:acme:a/b", CleanStart: true})
			if err == nil || ca == nil || ca.ReasonCode != rcNotAuthorized {
				t.Fatalf("connect: %v, CONNACK %+v", err, ca)
			}
			logHas(t, e, "unusable identity", "not a single topic level")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, newEnv(t))
		})
	}
}

func TestNewConfig(t *testing.T) {
	pki := newTestPKI(t, "CA")
	cert := pki.leaf(t, "broker", "", true)
	auth := newFakeAuth(pki.cert)
	tests := []struct {
		name string
		cfg  Config
		err  error
	}{
		{"ok/defaults", Config{Certificate: cert, Auth: auth}, nil},
		{"fail/no certificate", Config{Auth: auth}, ErrInvalidConfig},
		{"fail/no key", Config{Certificate: tls.Certificate{Certificate: cert.Certificate}, Auth: auth}, ErrInvalidConfig},
		{"fail/no authenticator", Config{Certificate: cert}, ErrInvalidConfig},
		{"fail/packet size too small", Config{Certificate: cert, Auth: auth, MaxPacketSize: 100}, ErrInvalidConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := New(tt.cfg)
			if !errors.Is(err, tt.err) {
				t.Fatalf("New: %v, want %v", err, tt.err)
			}
			if err == nil {
				if b.cfg.MaxPacketSize != DefaultMaxPacketSize {
					t.Fatalf("MaxPacketSize = %d", b.cfg.MaxPacketSize)
				}
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			} else if b != nil {
				t.Fatal("broker returned with an error")
			}
		})
	}
}

func TestServeAfterClose(t *testing.T) {
	e := newEnv(t)
	if err := e.b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.b.Serve(nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Serve after Close: %v, want ErrClosed", err)
	}
}
