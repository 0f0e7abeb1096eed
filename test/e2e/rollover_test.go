package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"
	coaptcp "github.com/plgd-dev/go-coap/v3/tcp"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/fleet"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pki"
)

// rolloverDevice is a device of the rollover test: its LDevID chain (leaf
// and issuing intermediate) and key.
type rolloverDevice struct {
	serial string
	id     string
	cert   tls.Certificate
	leaf   *x509.Certificate
}

// TestCARollover: 200 devices enrolled over CoAP renew before a rollover
// to a new intermediate, during the overlap (new sessions with their
// LDevIDs of the previous intermediate: profile, renewal, an MQTT
// connection) and after it; the previous intermediate cannot be retired
// while live certificates chain to it; once every device confirmed its new
// certificate nothing lives under it, it is retired (across a restart of
// Embark), and every device still renews. Each intermediate publishes its
// own CRL, which openssl verifies.
func TestCARollover(t *testing.T) {
	const n = 200
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "data")
	e := startRolloverEmbark(t, dir)
	fdir := mint(t, n+1, 0) // the last one is revoked during the overlap
	if res := e.trustAndImport(t, fdir); res.New != n+1 {
		t.Fatalf("imported %d devices", res.New)
	}
	state := filepath.Join(t.TempDir(), "state.jsonl")
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(),
		RootFile: e.root, Concurrency: 50, Renew: true, StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reports {
		if r.OK != n+1 {
			t.Fatalf("before the rollover: %s: %d of %d ok, failures %v", r.Phase, r.OK, n+1, r.Failed)
		}
	}
	devs := loadRolloverDevices(t, state)
	victim := devs[len(devs)-1]
	devs = devs[:len(devs)-1]
	root := e.srv.CA().Root()
	old := e.srv.CA().ActiveIssuer()
	// An LDevID of the old intermediate, kept to try it after retirement.
	oldCred := *devs[1]

	// Rollover through the admin API, as `embark ca rollover` does.
	var st admin.CAStatus
	if err := e.client.Do(ctx, http.MethodPost, "/v1/ca/rollover", []byte(`{}`), &st); err != nil {
		t.Fatal(err)
	}
	neu := e.srv.CA().ActiveIssuer()
	if st.Active != neu.ID || neu.ID == old.ID || len(st.Intermediates) != 2 || st.Intermediates[0].State != pki.IssuerPrevious ||
		st.Intermediates[0].LiveCertificates != 2*(n+1) || st.Intermediates[1].LiveCertificates != 0 {
		t.Fatalf("status after the rollover: %+v", st)
	}
	if !e.srv.CA().Root().Equal(root) {
		t.Fatal("an intermediate rollover changed the root")
	}

	t.Run("ok/overlap-crts-and-server-certificate", func(t *testing.T) {
		cl, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + e.srv.UDPAddr().String(), Roots: e.rootPool(), Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		certs, err := cl.CACerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(certs) != 3 || !certs[0].Equal(neu.Certificate) || !certs[1].Equal(old.Certificate) || !certs[2].Equal(root) {
			t.Fatalf("/crts during the overlap: %d certificates, want the new and the previous intermediate and the root", len(certs))
		}
		if peer := cl.PeerCertificates(); len(peer) < 2 || peer[0].CheckSignatureFrom(neu.Certificate) != nil {
			t.Fatal("the server certificate did not move to the new intermediate")
		}
		if st.Intermediates[1].EmbarkCertificates == nil || !slices.Contains(st.Intermediates[1].EmbarkCertificates, "MQTT responder certificate") {
			t.Fatalf("Embark's own certificates under the new intermediate: %v", st.Intermediates[1].EmbarkCertificates)
		}
	})

	t.Run("ok/overlap-mqtt-with-previous-ldevid", func(t *testing.T) {
		d := devs[0]
		conn, err := mqttclient.Dial(ctx, mqttclient.Config{Target: "mqtts://" + e.srv.MQTTAddr().String(), Roots: e.rootPool(),
			Certificate: d.cert, DeviceID: d.id, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("broker connection with an LDevID of the previous intermediate: %v", err)
		}
		defer conn.Close()
		_, csr := rolloverCSR(t, d.serial)
		iss, err := conn.Renew(ctx, csr, nil)
		if err != nil {
			t.Fatalf("MQTT renewal with an LDevID of the previous intermediate: %v", err)
		}
		if iss.Certificate.CheckSignatureFrom(neu.Certificate) != nil {
			t.Fatal("MQTT renewal not issued by the new intermediate")
		}
		// The device throws that certificate away and renews over CoAP
		// below with its old LDevID again, as after a lost answer: the
		// predecessor renews until its successor is seen in use.
	})

	t.Run("ok/overlap-every-device-renews-with-previous-ldevid", func(t *testing.T) {
		renewAll(t, ctx, e, devs, neu.Certificate, true)
	})

	// A device revoked during the overlap: its certificate of the previous
	// intermediate lands on that intermediate's CRL, its new one on the new
	// intermediate's.
	victimOld := victim.leaf
	renewAll(t, ctx, e, []*rolloverDevice{victim}, neu.Certificate, false)
	victimNew := victim.leaf
	var d device.Device
	if err := e.client.Do(ctx, http.MethodPost, "/v1/devices/acme:"+victim.serial+"/revoke", []byte(`{"reason":"key leaked"}`), &d); err != nil {
		t.Fatal(err)
	}
	if d.State != device.Revoked {
		t.Fatalf("victim %s", d.State)
	}
	t.Run("ok/crl-per-issuer", func(t *testing.T) {
		checkIssuerCRLs(t, ctx, e, map[string]*x509.Certificate{old.ID: victimOld, neu.ID: victimNew})
	})

	t.Run("fail/retire-while-live", func(t *testing.T) {
		stateFile := filepath.Join(dir, server.CADir, pki.StateFile)
		before, _ := os.ReadFile(stateFile)
		err := e.client.Do(ctx, http.MethodPost, "/v1/ca/intermediates/"+old.ID+"/retire", nil, nil)
		if err == nil || !strings.Contains(err.Error(), "live certificates chain to it") {
			t.Fatalf("retire with live certificates: %v", err)
		}
		if after, _ := os.ReadFile(stateFile); !bytes.Equal(before, after) {
			t.Fatal("the CA state changed")
		}
		if e.srv.CA().ActiveIssuer().ID != neu.ID || len(e.srv.CA().Chains()) != 2 {
			t.Fatal("the CA changed")
		}
	})

	// Every device renews again, now with its certificate of the new
	// intermediate: that confirms it, and its predecessor is superseded.
	t.Run("ok/every-device-confirms-its-new-certificate", func(t *testing.T) {
		renewAll(t, ctx, e, devs, neu.Certificate, false)
		var st admin.CAStatus
		if err := e.client.Do(ctx, http.MethodGet, "/v1/ca", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.Intermediates[0].LiveCertificates != 0 || st.Intermediates[1].LiveCertificates != 2*n {
			t.Fatalf("live certificates after the move: previous %d, new %d (want 0 and %d)",
				st.Intermediates[0].LiveCertificates, st.Intermediates[1].LiveCertificates, 2*n)
		}
	})

	t.Run("ok/broker-presents-the-new-intermediate", func(t *testing.T) {
		conn, err := tls.Dial("tcp", e.srv.MQTTAddr().String(), &tls.Config{RootCAs: e.rootPool(), ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{devs[0].cert}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		leaf := conn.ConnectionState().PeerCertificates[0]
		if err := leaf.CheckSignatureFrom(neu.Certificate); err != nil {
			t.Fatalf("the broker's certificate is not from the new intermediate: %v", err)
		}
	})

	// Restart: the rollover state survives.
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	e = startRolloverEmbark(t, dir)
	if e.srv.CA().ActiveIssuer().ID != neu.ID {
		t.Fatal("the rollover did not survive a restart")
	}
	t.Run("ok/retire", func(t *testing.T) {
		var st admin.CAStatus
		if err := e.client.Do(ctx, http.MethodPost, "/v1/ca/intermediates/"+old.ID[:16]+"/retire", nil, &st); err != nil {
			t.Fatal(err)
		}
		if st.Intermediates[0].State != pki.IssuerRetired || st.Intermediates[0].LiveCertificates != 0 || len(st.Intermediates[0].EmbarkCertificates) != 0 {
			t.Fatalf("after retire: %+v", st.Intermediates[0])
		}
		cl, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + e.srv.UDPAddr().String(), Roots: e.rootPool(), Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		certs, err := cl.CACerts(ctx)
		if err != nil || len(certs) != 2 || !certs[0].Equal(neu.Certificate) || !certs[1].Equal(root) {
			t.Fatalf("/crts after retire: %d certificates, %v", len(certs), err)
		}
		if _, err := fetchCRL(ctx, e, old.ID); err == nil || !strings.HasPrefix(err.Error(), codes.NotFound.String()+":") {
			t.Fatalf("CRL of the retired intermediate: %v, want 4.04 Not Found", err)
		}
		var httpDER []byte
		if err := e.client.Raw(ctx, "/v1/crl?aki="+old.ID, &httpDER); err == nil {
			t.Fatal("GET /v1/crl of the retired intermediate answered")
		}
	})
	t.Run("fail/ldevid-of-retired-intermediate", func(t *testing.T) {
		if oldCred.leaf.CheckSignatureFrom(old.Certificate) != nil {
			t.Fatal("test setup: not a certificate of the retired intermediate")
		}
		if err := e.srv.CA().VerifyLDevID(oldCred.leaf, time.Now()); !errors.Is(err, pki.ErrRetired) {
			t.Fatalf("VerifyLDevID = %v, want ErrRetired", err)
		}
		_, csr := rolloverCSR(t, oldCred.serial)
		if err := renewOne(ctx, "coaps://"+e.srv.UDPAddr().String(), e.rootPool(), &oldCred, csr, false); err == nil {
			t.Fatal("renewal with an LDevID of the retired intermediate succeeded")
		}
	})
	t.Run("ok/every-device-renews-after-retire", func(t *testing.T) {
		renewAll(t, ctx, e, devs, neu.Certificate, false)
	})
	t.Run("ok/audited", func(t *testing.T) {
		var page admin.AuditPage
		if err := e.client.Do(ctx, http.MethodGet, "/v1/audit?limit=10000", nil, &page); err != nil {
			t.Fatal(err)
		}
		seen := map[string]string{}
		for _, en := range page.Entries {
			if strings.HasPrefix(en.Action, "ca-") {
				seen[en.Action] = en.Actor + " " + en.Detail
			}
		}
		if !strings.Contains(seen["ca-rollover"], neu.ID) || !strings.Contains(seen["ca-retire"], old.ID) ||
			!strings.HasPrefix(seen["ca-retire"], "operator:e2e ") {
			t.Fatalf("audit entries of the rollover: %v", seen)
		}
	})
}

// TestCARootRollover: after a rollover to a new root, devices that trust
// only the previous root keep connecting (DTLS and MQTT) and renewing: the
// new intermediate comes with its bridge certificate from the previous
// root. /crts publishes both roots, the new one last.
func TestCARootRollover(t *testing.T) {
	const n = 20
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e := startRolloverEmbark(t, filepath.Join(t.TempDir(), "data"))
	fdir := mint(t, n, 0)
	e.trustAndImport(t, fdir)
	state := filepath.Join(t.TempDir(), "state.jsonl")
	reports, err := fleet.Run(ctx, fleet.Options{FactoryDir: fdir, Target: "coaps://" + e.srv.UDPAddr().String(),
		RootFile: e.root, Concurrency: 10, StateFile: state})
	if err != nil || reports[0].OK != n {
		t.Fatalf("enroll: %v %v", reports, err)
	}
	devs := loadRolloverDevices(t, state)
	oldRoot := e.srv.CA().Root()
	oldOnly := x509.NewCertPool()
	oldOnly.AddCert(oldRoot)

	var st admin.CAStatus
	if err := e.client.Do(ctx, http.MethodPost, "/v1/ca/rollover", []byte(`{"new_root":true}`), &st); err != nil {
		t.Fatal(err)
	}
	neu := e.srv.CA().ActiveIssuer()
	newRoot := e.srv.CA().Root()
	if newRoot.Equal(oldRoot) || !neu.Bridged || !st.Intermediates[1].Bridged {
		t.Fatalf("no new bridged root: %+v", st)
	}

	t.Run("ok/crts-publishes-both-roots", func(t *testing.T) {
		cl, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + e.srv.UDPAddr().String(), Roots: oldOnly, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("a device that trusts only the previous root cannot connect: %v", err)
		}
		defer cl.Close()
		certs, err := cl.CACerts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !certs[len(certs)-1].Equal(newRoot) || !slices.ContainsFunc(certs, oldRoot.Equal) {
			t.Fatalf("/crts: %d certificates, want both roots, the new one last", len(certs))
		}
		if root, err := cl.RootCert(ctx); err != nil || !root.Equal(newRoot) {
			t.Fatalf("/crts as a single certificate: %v", err)
		}
	})
	t.Run("ok/mqtt-device-trusting-previous-root-renews", func(t *testing.T) {
		d := devs[0]
		conn, err := mqttclient.Dial(ctx, mqttclient.Config{Target: "mqtts://" + e.srv.MQTTAddr().String(), Roots: oldOnly,
			Certificate: d.cert, DeviceID: d.id, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, csr := rolloverCSR(t, d.serial)
		iss, err := conn.Renew(ctx, csr, nil)
		if err != nil {
			t.Fatalf("MQTT renewal verified under the previous root: %v", err)
		}
		if iss.Certificate.CheckSignatureFrom(neu.Certificate) != nil {
			t.Fatal("not issued by the new intermediate")
		}
	})
	t.Run("ok/coap-devices-trusting-previous-root-renew", func(t *testing.T) {
		renewAllUnder(t, ctx, e, oldOnly, devs, neu.Certificate, true)
		newOnly := x509.NewCertPool()
		newOnly.AddCert(newRoot)
		renewAllUnder(t, ctx, e, newOnly, devs, neu.Certificate, false)
	})
}

// startRolloverEmbark starts Embark on dir with ":0" listeners, the
// embedded MQTT broker included.
func startRolloverEmbark(t *testing.T, dir string) *embark {
	t.Helper()
	return startEmbarkDir(t, dir, nil)
}

func loadRolloverDevices(t *testing.T, state string) []*rolloverDevice {
	t.Helper()
	recs, err := fleet.ReadState(state)
	if err != nil {
		t.Fatal(err)
	}
	var out []*rolloverDevice
	for _, r := range recs {
		pair, err := tls.X509KeyPair([]byte(r.CertPEM), []byte(r.KeyPEM))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &rolloverDevice{serial: r.Serial, id: leaf.URIs[0].String(), cert: pair, leaf: leaf})
	}
	slices.SortFunc(out, func(a, b *rolloverDevice) int { return strings.Compare(a.serial, b.serial) })
	return out
}

func rolloverCSR(t *testing.T, serial string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: serial}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, csr
}

// renewAll renews every device over a new DTLS session with its current
// LDevID (first fetching its profile over the same session, with
// withProfile) and checks that the new certificate comes from issuer and
// chains to the root with what /crts publishes.
func renewAll(t *testing.T, ctx context.Context, e *embark, devs []*rolloverDevice, issuer *x509.Certificate, withProfile bool) {
	t.Helper()
	renewAllUnder(t, ctx, e, e.rootPool(), devs, issuer, withProfile)
}

// renewAllUnder is renewAll for devices that trust roots.
func renewAllUnder(t *testing.T, ctx context.Context, e *embark, roots *x509.CertPool, devs []*rolloverDevice, issuer *x509.Certificate, withProfile bool) {
	t.Helper()
	target := "coaps://" + e.srv.UDPAddr().String()
	inters := x509.NewCertPool()
	for _, c := range e.srv.CA().Intermediates() {
		inters.AddCert(c)
	}
	sem := make(chan struct{}, 32)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for _, d := range devs {
		key, csr := rolloverCSR(t, d.serial)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := renewOne(ctx, target, roots, d, csr, withProfile)
			if err == nil {
				err = acceptRenewal(d, key, issuer, roots, inters)
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, d.serial+": "+err.Error())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("%d of %d devices could not renew, e.g. %s", len(failures), len(devs), failures[0])
	}
}

// renewOne renews d with csr; a failed handshake (a lost datagram) is
// tried again, and so is a request whose answer was lost: the server
// answers the same CSR with the same certificate.
func renewOne(ctx context.Context, target string, roots *x509.CertPool, d *rolloverDevice, csr []byte, withProfile bool) error {
	var last error
	for range 4 {
		cl, err := estclient.Dial(ctx, estclient.Config{Target: target, Roots: roots, Certificate: &d.cert, Timeout: 10 * time.Second})
		if err != nil {
			last = err
			if errors.Is(err, estclient.ErrHandshake) {
				continue
			}
			return err
		}
		if withProfile {
			if _, err := cl.Profile(ctx); err != nil {
				cl.Close()
				return fmt.Errorf("profile: %w", err)
			}
		}
		c, err := cl.Reenroll(ctx, csr)
		cl.Close()
		if err == nil {
			d.leaf = c
			return nil
		}
		var se *estclient.StatusError
		if errors.As(err, &se) {
			return err
		}
		last = err
	}
	return last
}

// acceptRenewal checks the certificate a device got and makes it current.
func acceptRenewal(d *rolloverDevice, key *ecdsa.PrivateKey, issuer *x509.Certificate, roots, inters *x509.CertPool) error {
	c := d.leaf
	if !key.PublicKey.Equal(c.PublicKey) {
		return errors.New("the certificate does not carry the CSR's key")
	}
	if err := c.CheckSignatureFrom(issuer); err != nil {
		return fmt.Errorf("not issued by %s: %w", issuer.Subject.CommonName, err)
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return err
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != d.id {
		return fmt.Errorf("names %v, want %s", c.URIs, d.id)
	}
	d.cert = tls.Certificate{Certificate: [][]byte{c.Raw, issuer.Raw}, PrivateKey: key, Leaf: c}
	return nil
}

// checkIssuerCRLs fetches the CRL of each intermediate (by key id) over
// CoAP and over the admin API, checks they agree, are signed by it, list
// its revoked certificate and not the other's, and that openssl verifies
// each against its chain. The CRL without a key id is the active one's.
func checkIssuerCRLs(t *testing.T, ctx context.Context, e *embark, revoked map[string]*x509.Certificate) {
	t.Helper()
	chains := map[string][]*x509.Certificate{}
	for _, ch := range e.srv.CA().Chains() {
		chains[hex.EncodeToString(ch[0].SubjectKeyId)] = ch
	}
	for id, cert := range revoked {
		chain := chains[id]
		if chain == nil {
			t.Fatalf("no chain for intermediate %s", id)
		}
		var rl *x509.RevocationList
		waitFor(t, "the CRL of "+id+" to list "+cert.SerialNumber.Text(16), 10*time.Second, func() bool {
			der, err := fetchCRL(ctx, e, id)
			if err != nil {
				return false
			}
			rl, err = x509.ParseRevocationList(der)
			return err == nil && listsSerial(rl, cert)
		})
		if err := rl.CheckSignatureFrom(chain[0]); err != nil || !bytes.Equal(rl.AuthorityKeyId, chain[0].SubjectKeyId) {
			t.Fatalf("CRL of %s: not signed by it: %v", id, err)
		}
		for other, oc := range revoked {
			if other != id && listsSerial(rl, oc) {
				t.Errorf("CRL of %s lists %x, a certificate of %s", id, oc.SerialNumber, other)
			}
		}
		var httpDER []byte
		if err := e.client.Raw(ctx, "/v1/crl?aki="+id, &httpDER); err != nil {
			t.Fatal(err)
		}
		if hrl, err := x509.ParseRevocationList(httpDER); err != nil || hrl.Number.Cmp(rl.Number) < 0 || !listsSerial(hrl, cert) {
			t.Fatalf("GET /v1/crl?aki=%s: %v", id, err)
		}
		opensslVerifyCRL(t, ctx, httpDER, chain)
	}
	def, err := fetchCRL(ctx, e, "")
	if err != nil {
		t.Fatal(err)
	}
	if rl, err := x509.ParseRevocationList(def); err != nil || rl.CheckSignatureFrom(e.srv.CA().Intermediate()) != nil {
		t.Fatalf("the default CRL is not the active intermediate's: %v", err)
	}
}

func listsSerial(rl *x509.RevocationList, c *x509.Certificate) bool {
	for _, en := range rl.RevokedCertificateEntries {
		if en.SerialNumber.Cmp(c.SerialNumber) == 0 {
			return true
		}
	}
	return false
}

// fetchCRL gets /embark/crl[?aki=id] over CoAP over TLS, as a device
// would.
func fetchCRL(ctx context.Context, e *embark, id string) ([]byte, error) {
	cfg := &tls.Config{RootCAs: e.rootPool(), MinVersion: tls.VersionTLS13, NextProtos: []string{"coap"}, ServerName: "127.0.0.1"}
	d := tls.Dialer{Config: cfg}
	nc, err := d.DialContext(ctx, "tcp", e.srv.TCPAddr().String())
	if err != nil {
		return nil, err
	}
	cc, err := coaptcp.Client(nc.(*tls.Conn), options.WithCloseSocket())
	if err != nil {
		nc.Close()
		return nil, err
	}
	defer cc.Close()
	var opts []message.Option
	if id != "" {
		opts = append(opts, message.Option{ID: message.URIQuery, Value: []byte("aki=" + id)})
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := cc.Get(rctx, "/embark/crl", opts...)
	if err != nil {
		return nil, err
	}
	defer cc.ReleaseMessage(resp)
	var body []byte
	if r := resp.Body(); r != nil {
		if body, err = io.ReadAll(r); err != nil {
			return nil, err
		}
	}
	if resp.Code() != codes.Content {
		return nil, fmt.Errorf("%s: %s", resp.Code(), body)
	}
	return body, nil
}

func opensslVerifyCRL(t *testing.T, ctx context.Context, der []byte, chain []*x509.Certificate) {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Log("openssl not installed: CRL not checked with it")
		return
	}
	tmp := t.TempDir()
	crlFile, caFile := filepath.Join(tmp, "crl.der"), filepath.Join(tmp, "chain.pem")
	var pemChain []byte
	for _, c := range chain {
		pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(crlFile, der, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, pemChain, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, openssl, "crl", "-inform", "DER", "-in", crlFile, "-CAfile", caFile, "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl does not verify the CRL of %s: %v\n%s", chain[0].Subject.CommonName, err, out)
	}
}
