package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/voucher"
)

// peekResponse decodes an answer without checking Embark's signature: a
// device asking for a voucher cannot check it yet.
func peekResponse(t *testing.T, b []byte) mqttwire.Response {
	t.Helper()
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(b); err != nil {
		t.Fatal(err)
	}
	var r mqttwire.Response
	if err := cbor.Unmarshal(msg.Payload, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestVoucherOverMQTT: devices connected to the embedded broker with their
// IDevID (the broker verified against Embark's root) publish their voucher
// requests to "<ns>/voucher"; the signed answer carries the voucher, which
// the device verifies against its firmware's anchors; with the root it
// pins, it then verifies Embark's signature on the answer. A request
// published in another device's namespace is refused by the broker (ACL);
// one naming another device in the device's own namespace by Embark.
func TestVoucherOverMQTT(t *testing.T) {
	const n = 20
	e := startEmbark(t, nil)
	fdir := mintOwned(t, e, n)
	m := startMASA(t, fdir)
	e.trustAndImport(t, fdir)
	e.setMASA(t, m.URL())
	devs, err := factory.ReadDevices(filepath.Join(fdir, factory.DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	fw, err := factory.ReadFirmware(fdir)
	if err != nil {
		t.Fatal(err)
	}
	addr := e.srv.MQTTAddr().String()
	roots := x509.NewCertPool()
	roots.AddCert(e.srv.CA().Root())
	for i, d := range devs {
		id := device.ID("acme", d.Serial)
		// The broker is verified against Embark's root, which this test
		// knows: a device without it asks over plain CoAP instead
		// (TestVoucherRequestRefusals); what is tested here is the
		// "voucher" op of the MQTT API.
		conn, err := tls.Dial("tcp", addr, &tls.Config{Certificates: []tls.Certificate{*idevidOf(d)}, ServerName: "127.0.0.1",
			RootCAs: roots, MinVersion: tls.VersionTLS13})
		if err != nil {
			t.Fatal(err)
		}
		rc := &rawClient{in: make(chan struct{}, 64)}
		// paho writes from more than one goroutine: the connection must
		// serialise them.
		rc.c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), ClientID: id,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				rc.mu.Lock()
				rc.got = append(rc.got, pr.Packet)
				rc.mu.Unlock()
				select {
				case rc.in <- struct{}{}:
				default:
				}
				return true, nil
			}}})
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if _, err := rc.c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30}); err != nil {
			t.Fatal(err)
		}
		rc.subscribe(t, mqttwire.ResponseTopic(id))
		nonce := make([]byte, 16)
		rand.Read(nonce)
		body := signPledge(t, d.Key, d.Chain[0], d.Serial, nonce, nil)
		if i == 0 {
			// Another device's namespace: the broker refuses the publish.
			code, _ := rc.publish(t, mqttwire.RequestTopic(device.ID("acme", devs[1].Serial), mqttwire.OpVoucher), mqttwire.ResponseTopic(id), body)
			if code < 0x80 {
				t.Fatalf("the broker let a device publish in another's namespace (reason code %#x)", code)
			}
			// Its own namespace, but another device's request.
			other := signPledge(t, devs[1].Key, devs[1].Chain[0], devs[1].Serial, nonce, nil)
			_, corr := rc.publish(t, mqttwire.RequestTopic(id, mqttwire.OpVoucher), mqttwire.ResponseTopic(id), other)
			p := rc.answer(corr, 10*time.Second)
			if p == nil {
				t.Fatal("no answer")
			}
			if r := peekResponse(t, p.Payload); r.Status != mqttwire.StatusRefused || r.Reason != "wrong_device" || len(r.Voucher) != 0 {
				t.Fatalf("another device's request: %+v", r)
			}
		}
		_, corr := rc.publish(t, mqttwire.RequestTopic(id, mqttwire.OpVoucher), mqttwire.ResponseTopic(id), body)
		p := rc.answer(corr, 15*time.Second)
		if p == nil {
			t.Fatalf("%s: no answer", id)
		}
		r := peekResponse(t, p.Payload)
		if r.Status != mqttwire.StatusOK || !bytes.Equal(r.Nonce, nonce) {
			t.Fatalf("%s: answer %+v", id, r)
		}
		v, err := voucher.Verify(r.Voucher, voucher.VerifyOptions{Anchors: fw.VoucherAnchors, Serial: d.Serial, Nonce: nonce, Now: time.Now})
		if err != nil {
			t.Fatalf("%s: the device refuses the voucher: %v", id, err)
		}
		pinned, _ := v.Pinned()
		if !pinned.Equal(e.srv.CA().Root()) {
			t.Fatalf("%s: the voucher pins %s, not Embark's root", id, pinned.Subject)
		}
		pinnedRoots := x509.NewCertPool()
		pinnedRoots.AddCert(pinned)
		if _, err := mqttwire.NewVerifier(pinnedRoots, nil).Response(p.Payload); err != nil {
			t.Fatalf("%s: Embark's answer does not verify with the pinned root: %v", id, err)
		}
		cancel()
	}
	if st := m.Stats(); st.Issued != n {
		t.Fatalf("MASA %+v", st)
	}
	counts := e.auditCounts(t)
	if counts["voucher/ok"] != n {
		t.Fatalf("audit %v", counts)
	}
}
