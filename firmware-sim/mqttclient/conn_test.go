package mqttclient

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
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/mqttclient/mqtttest"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/mqttwire"
)

// wait bounds what a test waits for; it only ends a test that would hang.
const wait = 20 * time.Second

func newPKI(t *testing.T) *mqtttest.PKI {
	t.Helper()
	p, err := mqtttest.NewPKI()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func start(t *testing.T, p *mqtttest.PKI, o mqtttest.Options) *mqtttest.Server {
	t.Helper()
	s, err := mqtttest.Start(p, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// factoryDevice is a device of the test manufacturer: its URN and IDevID.
func factoryDevice(t *testing.T, p *mqtttest.PKI, serial string) (string, tls.Certificate) {
	t.Helper()
	cert, err := p.IDevID(serial)
	if err != nil {
		t.Fatal(err)
	}
	return device.ID("acme", serial), cert
}

// ldevid is an LDevID for id, as if it had enrolled.
func ldevid(t *testing.T, p *mqtttest.PKI, id string) tls.Certificate {
	t.Helper()
	cert, err := p.Leaf("ldevid", id)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func newCSR(t *testing.T, cn string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func config(s *mqtttest.Server, p *mqtttest.PKI, id string, cert tls.Certificate) Config {
	return Config{Target: s.Target, Roots: p.Roots(), Certificate: cert, DeviceID: id, Timeout: wait}
}

func dial(t *testing.T, c Config) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	conn, err := Dial(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func TestEnroll(t *testing.T) {
	p := newPKI(t)
	stranger := ldevid(t, p, device.ID("acme", "SN-OTHER"))
	for _, tc := range []struct {
		name    string
		opts    mqtttest.Options
		timeout time.Duration
		// retries is how many "retry" answers come before the last one.
		retries int
		want    error
		status  *StatusError
		issued  int
		nonces  int
		ignored int64
	}{
		{name: "ok/enroll", issued: 1, nonces: 1},
		{name: "ok/retry then success", opts: mqtttest.Options{RetryFirst: 1}, retries: 1, issued: 1, nonces: 2},
		{name: "ok/stale nonce resent with a fresh one", opts: mqtttest.Options{StaleFirst: 1}, issued: 1, nonces: 2},
		{name: "fail/refused with reason", opts: mqtttest.Options{Refuse: "unknown_device", RefuseMessage: "no provenance"},
			status: &StatusError{Op: mqttwire.OpEnroll, Status: mqttwire.StatusRefused, Reason: "unknown_device", Message: "no provenance"},
			nonces: 1},
		{name: "fail/answer signed by a certificate that is not the responder's", timeout: time.Second,
			opts: mqtttest.Options{Tamper: mqtttest.Tamper{Op: mqttwire.OpEnroll, Signer: &stranger}},
			want: context.DeadlineExceeded, issued: 1, nonces: 1, ignored: 1},
		{name: "fail/answer with another correlation id", timeout: time.Second,
			opts: mqtttest.Options{Tamper: mqtttest.Tamper{Op: mqttwire.OpEnroll, OtherCorrelation: true}},
			want: context.DeadlineExceeded, issued: 1, nonces: 1, ignored: 1},
		{name: "fail/answer without the request's nonce",
			opts: mqtttest.Options{Tamper: mqtttest.Tamper{Op: mqttwire.OpEnroll, OtherNonce: true}},
			want: ErrResponse, issued: 1, nonces: 1},
		{name: "fail/nonce answer signed by a certificate that is not the responder's", timeout: time.Second,
			opts: mqtttest.Options{Tamper: mqtttest.Tamper{Op: mqttwire.OpNonce, Signer: &stranger}},
			want: context.DeadlineExceeded, nonces: 1, ignored: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, p, tc.opts)
			id, idevid := factoryDevice(t, p, "SN-1")
			c := config(s, p, id, idevid)
			if tc.timeout > 0 {
				c.Timeout = tc.timeout
			}
			conn := dial(t, c)
			if got := s.ClientCert(id); got == nil || !got.Equal(idevid.Leaf) {
				t.Fatal("the broker did not see the IDevID in the handshake")
			}
			key, csr := newCSR(t, "SN-1")
			ctx := context.Background()
			var iss *Issued
			var err error
			for n := 0; n <= tc.retries; n++ {
				iss, err = conn.Enroll(ctx, csr, &mqttwire.Claims{FirmwareVersion: "1.4.2"})
				if n == tc.retries {
					break
				}
				var se *StatusError
				if !errors.As(err, &se) || !se.Retryable() || se.RetryAfter != time.Second || se.Reason != mqtttest.ReasonHeld {
					t.Fatalf("answer %d: %v, want retry after 1s (held)", n, err)
				}
			}
			switch {
			case tc.status != nil:
				var se *StatusError
				if !errors.As(err, &se) || *se != *tc.status || se.Retryable() {
					t.Fatalf("err = %#v, want %#v", err, tc.status)
				}
			case !errors.Is(err, tc.want):
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if (err == nil) != (iss != nil) {
				t.Fatalf("certificate %v with error %v", iss, err)
			}
			if iss != nil {
				if err := iss.Verify(p.Roots(), &key.PublicKey, id, time.Now()); err != nil {
					t.Fatalf("issued certificate: %v", err)
				}
			}
			if got := s.Issued(); got != tc.issued {
				t.Fatalf("issued %d, want %d", got, tc.issued)
			}
			if got := s.Requests(mqttwire.OpNonce); got != tc.nonces {
				t.Fatalf("%d nonces asked, want %d", got, tc.nonces)
			}
			if got := conn.Stats(); got.IgnoredResponses != tc.ignored || got.IgnoredCommands != 0 {
				t.Fatalf("stats %+v, want %d ignored responses", got, tc.ignored)
			}
		})
	}
}

func TestEnrollAgainGetsTheSameCertificate(t *testing.T) {
	p := newPKI(t)
	s := start(t, p, mqtttest.Options{})
	id, idevid := factoryDevice(t, p, "SN-1")
	conn := dial(t, config(s, p, id, idevid))
	_, csr := newCSR(t, "SN-1")
	first, err := conn.Enroll(context.Background(), csr, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := conn.Enroll(context.Background(), csr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !first.Certificate.Equal(again.Certificate) || s.Issued() != 1 {
		t.Fatalf("a resent enrollment got another certificate (%d issued)", s.Issued())
	}
}

func takeCommand(t *testing.T, conn *Conn) mqttwire.Command {
	t.Helper()
	select {
	case c := <-conn.Commands():
		return c
	case <-time.After(wait):
		t.Fatal("no command")
		return mqttwire.Command{}
	}
}

func TestRotateCommand(t *testing.T) {
	p := newPKI(t)
	s := start(t, p, mqtttest.Options{})
	ctx := context.Background()
	id := device.ID("acme", "SN-1")
	old := ldevid(t, p, id)
	if err := s.PublishCommand(ctx, mqttwire.Command{Device: id, Generation: 3, Rotate: true, Campaign: "c1"}); err != nil {
		t.Fatal(err)
	}
	c := config(s, p, id, old)
	c.Commands = true
	conn := dial(t, c)
	cmd := takeCommand(t, conn)
	if cmd.Generation != 3 || !cmd.Rotate || cmd.Device != id || cmd.Campaign != "c1" {
		t.Fatalf("command %+v, want generation 3, rotate", cmd)
	}
	key, csr := newCSR(t, "SN-1")
	iss, err := conn.Renew(ctx, csr, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := iss.Verify(p.Roots(), &key.PublicKey, id, time.Now()); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()

	// Back with the new LDevID: the retained command comes again, and the
	// state report is signed with the new key.
	c.Certificate = tls.Certificate{Certificate: [][]byte{iss.Certificate.Raw, iss.Chain[0].Raw}, PrivateKey: key}
	conn = dial(t, c)
	if got := s.ClientCert(id); !got.Equal(iss.Certificate) {
		t.Fatal("the broker did not see the new LDevID in the handshake")
	}
	if again := takeCommand(t, conn); again.Generation != 3 {
		t.Fatalf("retained command generation %d, want 3 again", again.Generation)
	}
	if err := conn.ReportState(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if got := s.States(id); len(got) != 1 || got[0] != 3 {
		t.Fatalf("reported generations %v, want [3]", got)
	}
	if st := conn.Stats(); st != (Stats{}) {
		t.Fatalf("stats %+v, want nothing ignored", st)
	}
}

func TestForgedCommands(t *testing.T) {
	p := newPKI(t)
	id := device.ID("acme", "SN-1")
	// Another device's LDevID chains to the same root: its signature
	// verifies, but it is not Embark's responder.
	neighbour, err := signerOf(ldevid(t, p, device.ID("acme", "SN-2")))
	if err != nil {
		t.Fatal(err)
	}
	responder, err := signerOf(p.Responder)
	if err != nil {
		t.Fatal(err)
	}
	revoke := mqttwire.Command{Device: id, Generation: 9, Revoked: true, Reason: "compromised"}
	for _, tc := range []struct {
		name  string
		forge func() ([]byte, error)
	}{
		{name: "fail/revoked signed by another device's key under the same root", forge: func() ([]byte, error) {
			return neighbour.SignCommand(revoke)
		}},
		{name: "fail/revoked signed by the responder for another device", forge: func() ([]byte, error) {
			other := revoke
			other.Device = device.ID("acme", "SN-2")
			return responder.SignCommand(other)
		}},
		{name: "fail/a signed response posing as a command", forge: func() ([]byte, error) {
			return responder.SignResponse(mqttwire.Response{Op: mqttwire.OpEnroll, Device: id, Status: mqttwire.StatusRefused, Reason: "revoked"})
		}},
		{name: "fail/no COSE message", forge: func() ([]byte, error) { return []byte("revoked"), nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := start(t, p, mqtttest.Options{})
			ctx := context.Background()
			forged, err := tc.forge()
			if err != nil {
				t.Fatal(err)
			}
			if err := s.PublishRetained(ctx, mqttwire.CommandTopic(id), forged); err != nil {
				t.Fatal(err)
			}
			c := config(s, p, id, ldevid(t, p, id))
			c.Commands = true
			conn := dial(t, c)
			// The retained forgery comes first, then a genuine command.
			wctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			if err := s.Wait(wctx, func() bool { return s.RetainedSent(id) == 1 }); err != nil {
				t.Fatalf("the forgery was not sent: %v", err)
			}
			if err := s.PublishCommand(ctx, mqttwire.Command{Device: id, Generation: 1, Zone: "plant"}); err != nil {
				t.Fatal(err)
			}
			cmd := takeCommand(t, conn)
			if cmd.Generation != 1 || cmd.Revoked || cmd.Zone != "plant" {
				t.Fatalf("command %+v, want the genuine generation 1", cmd)
			}
			if st := conn.Stats(); st.IgnoredCommands != 1 || st.IgnoredResponses != 0 {
				t.Fatalf("stats %+v, want one ignored command", st)
			}
			select {
			case extra := <-conn.Commands():
				t.Fatalf("unexpected command %+v", extra)
			default:
			}
		})
	}
}

func signerOf(c tls.Certificate) (*mqttwire.Signer, error) {
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		chain = append(chain, cert)
	}
	return mqttwire.NewSigner(c.PrivateKey.(*ecdsa.PrivateKey), chain)
}

func TestPublishOnly(t *testing.T) {
	p := newPKI(t)
	s := start(t, p, mqtttest.Options{})
	id, idevid := factoryDevice(t, p, "SN-1")
	c := config(s, p, id, idevid)
	c.PublishOnly = true
	conn := dial(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := conn.PublishQoS1(ctx, mqttwire.RequestTopic(id, mqttwire.OpNonce), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx, func() bool { return s.BarePublishes() == 1 }); err != nil {
		t.Fatalf("the responder saw %d bare publishes, want 1: %v", s.BarePublishes(), err)
	}
	if n := s.Subscribed(mqttwire.ResponseTopic(id)); n != 0 {
		t.Fatalf("%d subscriptions to the response topic, want none", n)
	}
	if _, err := conn.Nonce(ctx); !errors.Is(err, ErrConfig) {
		t.Fatalf("Nonce on a publish-only connection: %v, want %v", err, ErrConfig)
	}
}

func TestDialRefused(t *testing.T) {
	p := newPKI(t)
	s := start(t, p, mqtttest.Options{})
	other := newPKI(t)
	id, idevid := factoryDevice(t, p, "SN-1")
	_, foreign := factoryDevice(t, other, "SN-1")
	var certErr *tls.CertificateVerificationError
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want error
		as   any
	}{
		{name: "fail/no roots", mod: func(c *Config) { c.Roots = nil }, want: ErrConfig},
		{name: "fail/device id that is no topic level", mod: func(c *Config) { c.DeviceID = "acme/SN-1" }, want: ErrConfig},
		{name: "fail/no client certificate", mod: func(c *Config) { c.Certificate = tls.Certificate{} }, want: ErrConfig},
		{name: "fail/commands on a publish-only connection", mod: func(c *Config) { c.Commands, c.PublishOnly = true, true }, want: ErrConfig},
		{name: "fail/coaps target", mod: func(c *Config) { c.Target = "coaps://127.0.0.1:5684" }, want: ErrTarget},
		{name: "fail/broker not under the roots", mod: func(c *Config) { c.Roots = other.Roots() }, want: ErrHandshake, as: &certErr},
		{name: "fail/broker under another name", mod: func(c *Config) { c.ServerName = "elsewhere.test" }, want: ErrHandshake, as: &certErr},
		{name: "fail/client certificate the broker does not trust", mod: func(c *Config) { c.Certificate = foreign }, want: ErrHandshake},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := config(s, p, id, idevid)
			tc.mod(&c)
			conn, err := Dial(context.Background(), c)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.as != nil && !errors.As(err, tc.as) {
				t.Fatalf("err = %v, want a %T in it", err, tc.as)
			}
			if conn != nil {
				t.Fatal("a connection came with the error")
			}
			if s.ClientCert(id) != nil || s.Requests(mqttwire.OpNonce) != 0 {
				t.Fatal("the broker saw a session")
			}
		})
	}
}

func TestConnectionLost(t *testing.T) {
	p := newPKI(t)
	s, err := mqtttest.Start(p, mqtttest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	id, idevid := factoryDevice(t, p, "SN-1")
	conn := dial(t, config(s, p, id, idevid))
	s.Close()
	select {
	case <-conn.Done():
	case <-time.After(wait):
		t.Fatal("the connection outlived the broker")
	}
	if !errors.Is(conn.Err(), ErrConnectionLost) {
		t.Fatalf("Err = %v, want %v", conn.Err(), ErrConnectionLost)
	}
	if _, err := conn.Nonce(context.Background()); !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Nonce after the loss: %v, want %v", err, ErrConnectionLost)
	}
	_ = conn.Close()
	if _, err := conn.Nonce(context.Background()); !errors.Is(err, ErrClosed) && !errors.Is(err, ErrConnectionLost) {
		t.Fatalf("Nonce after Close: %v", err)
	}
}

func TestIssuedVerify(t *testing.T) {
	p := newPKI(t)
	id := device.ID("acme", "SN-1")
	good := ldevid(t, p, id)
	key := good.PrivateKey.(*ecdsa.PrivateKey)
	otherDevice := ldevid(t, p, device.ID("acme", "SN-2"))
	// The name and the key are right, the issuer is not.
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "SN-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), URIs: good.Leaf.URIs,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.Manufacturer.Cert, &key.PublicKey, p.Manufacturer.Key)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		iss  *Issued
		want error
	}{
		{name: "ok/issued for the key and the device", iss: &Issued{Certificate: good.Leaf, Chain: []*x509.Certificate{p.Intermediate.Cert}}},
		{name: "fail/another key", iss: &Issued{Certificate: otherDevice.Leaf, Chain: []*x509.Certificate{p.Intermediate.Cert}}, want: ErrKeyMismatch},
		{name: "fail/not under the Embark root", iss: &Issued{Certificate: foreign, Chain: []*x509.Certificate{p.Manufacturer.Cert}}, want: ErrUntrustedCert},
		{name: "fail/without the intermediate", iss: &Issued{Certificate: good.Leaf}, want: ErrUntrustedCert},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.iss.Verify(p.Roots(), &key.PublicKey, id, time.Now()); !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("fail/another device", func(t *testing.T) {
		k := otherDevice.PrivateKey.(*ecdsa.PrivateKey)
		iss := &Issued{Certificate: otherDevice.Leaf, Chain: []*x509.Certificate{p.Intermediate.Cert}}
		if err := iss.Verify(p.Roots(), &k.PublicKey, id, time.Now()); !errors.Is(err, ErrWrongIdentity) {
			t.Fatalf("Verify = %v, want %v", err, ErrWrongIdentity)
		}
	})
}
