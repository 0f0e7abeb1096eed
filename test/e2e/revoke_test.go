package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/device"
)

// TestRevokeCutsOffLiveSessions: a device holding a DTLS session and a
// broker connection with its LDevID is revoked; both are dropped at once,
// new handshakes with the same LDevID are refused (DTLS and broker), and so
// is renewal.
func TestRevokeCutsOffLiveSessions(t *testing.T) {
	e := startEmbark(t, nil)
	fdir := mint(t, 2, 0)
	e.trustAndImport(t, fdir)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	state := filepath.Join(t.TempDir(), "state.jsonl")
	reps, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(),
		RootFile: e.root, StateFile: state})
	if err != nil || reps[0].OK != 2 {
		t.Fatalf("%v %v", reps, err)
	}
	recs, err := fleet.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	certOf := func(serial string) tls.Certificate {
		for _, r := range recs {
			if r.Serial == serial {
				pair, err := tls.X509KeyPair([]byte(r.CertPEM), []byte(r.KeyPEM))
				if err != nil {
					t.Fatal(err)
				}
				return pair
			}
		}
		t.Fatalf("no state for %s", serial)
		return tls.Certificate{}
	}
	dial := func(c tls.Certificate) (*estclient.Client, error) {
		return estclient.Dial(ctx, estclient.Config{Target: "coaps://" + e.srv.UDPAddr().String(), Roots: e.rootPool(),
			Certificate: &c, Timeout: 3 * time.Second})
	}
	victim, bystander := certOf("ACME-000001"), certOf("ACME-000002")
	live, err := dial(victim)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	other, err := dial(bystander)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, c := range []*estclient.Client{live, other} {
		if _, err := c.Profile(ctx); err != nil { // sessions in use
			t.Fatal(err)
		}
	}
	mqttDial := func(c tls.Certificate) (*mqttclient.Conn, error) {
		return mqttclient.Dial(ctx, mqttclient.Config{Target: "mqtts://" + e.srv.MQTTAddr().String(), Roots: e.rootPool(),
			Certificate: c, DeviceID: device.ID("acme", "ACME-000001"), Timeout: 3 * time.Second, Commands: true})
	}
	broker, err := mqttDial(victim)
	if err != nil {
		t.Fatalf("broker connection with the LDevID: %v", err)
	}
	defer broker.Close()

	body, _ := json.Marshal(admin.OperatorRequest{Reason: "key leaked"})
	var d device.Device
	if err := e.client.Do(ctx, http.MethodPost, "/v1/devices/acme:ACME-000001/revoke", body, &d); err != nil {
		t.Fatal(err)
	}
	if d.State != device.Revoked {
		t.Fatalf("state %s", d.State)
	}
	start := time.Now()
	waitFor(t, "the live session to drop", 2*time.Second, func() bool {
		c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := live.Profile(c)
		return err != nil
	})
	t.Logf("session dropped %s after the revocation", time.Since(start).Round(time.Millisecond))
	select {
	case <-broker.Done():
		t.Logf("broker connection dropped %s after the revocation", time.Since(start).Round(time.Millisecond))
	case <-time.After(time.Second):
		t.Fatal("the broker connection is still up 1s after the revocation")
	}
	if c, err := mqttDial(victim); err == nil {
		c.Close()
		t.Fatal("the broker accepted the revoked LDevID again")
	}
	if _, err := other.Profile(ctx); err != nil {
		t.Fatalf("another device's session was dropped: %v", err)
	}
	if c, err := dial(victim); err == nil {
		_, perr := c.Profile(ctx)
		c.Close()
		t.Fatalf("new session with the revoked LDevID accepted (profile: %v)", perr)
	}
	// The revoked certificate is in the CRL, which verifies against the
	// issuing CA (and openssl agrees).
	var revokedSerial string
	if leaf, err := x509.ParseCertificate(victim.Certificate[0]); err == nil {
		revokedSerial = fmt.Sprintf("%x", leaf.SerialNumber)
	}
	waitFor(t, "the CRL to list the revoked certificate", 5*time.Second, func() bool {
		der, err := e.fetchCRL(ctx)
		if err != nil {
			return false
		}
		rl, err := x509.ParseRevocationList(der)
		if err != nil || rl.CheckSignatureFrom(e.srv.CA().Intermediate()) != nil {
			return false
		}
		for _, en := range rl.RevokedCertificateEntries {
			if fmt.Sprintf("%x", en.SerialNumber) == revokedSerial {
				return true
			}
		}
		return false
	})
	if openssl, err := exec.LookPath("openssl"); err == nil {
		der, _ := e.fetchCRL(ctx)
		dir := t.TempDir()
		crlFile, chain := filepath.Join(dir, "crl.der"), filepath.Join(dir, "chain.pem")
		_ = os.WriteFile(crlFile, der, 0o600)
		var pemChain []byte
		for _, c := range e.srv.CA().Chain() {
			pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		_ = os.WriteFile(chain, pemChain, 0o600)
		out, err := exec.CommandContext(ctx, openssl, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", chain, "-noout", "-text").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "verify OK") {
			t.Fatalf("openssl crl does not verify the CRL against the Embark CA: %v\n%s", err, out)
		}
		if !strings.Contains(strings.ToUpper(string(out)), strings.ToUpper(revokedSerial)) {
			t.Fatalf("openssl does not list %s:\n%s", revokedSerial, out)
		}
	}

	// Renewal with the revoked certificate is refused (over TLS, whose
	// handshake refuses it the same way).
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if c, err := estclient.Dial(ctx, estclient.Config{Target: "coaps+tcp://" + e.srv.TCPAddr().String(), Roots: e.rootPool(),
		Certificate: &victim, Timeout: 3 * time.Second}); err == nil {
		_, rerr := c.Reenroll(ctx, csr)
		c.Close()
		if rerr == nil {
			t.Fatal("renewal with a revoked LDevID succeeded")
		}
	}
}

// fetchCRL gets the CRL from the admin API.
func (e *embark) fetchCRL(ctx context.Context) ([]byte, error) {
	var out []byte
	err := e.client.Raw(ctx, "/v1/crl", &out)
	return out, err
}
