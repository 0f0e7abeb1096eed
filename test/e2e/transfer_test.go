package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/transfer"
)

// TestTransferBetweenTwoEmbarks sells a device from one operator's Embark to
// another's, both on loopback, each with its own owner key, both trusting
// the same manufacturer and holding its manifest (which names the first
// operator by name). The device onboards at the first, is refused at the
// second, is sold, and after a factory reset onboards at the second; the
// first revoked its LDevID. Replays and forgeries change nothing. Then the
// device is sold back, with the chain of both records.
func TestTransferBetweenTwoEmbarks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := startEmbark(t, nil) // owner "example-operator", as the factory's default
	b := startEmbark(t, func(c *config.Config) { c.Owner = "second-operator" })
	fdir := mint(t, 2, 0)
	a.trustAndImport(t, fdir)
	b.trustAndImport(t, fdir)
	devs, err := factory.ReadDevices(filepath.Join(fdir, factory.DevicesFile))
	if err != nil {
		t.Fatal(err)
	}
	dev, kept := devs[0], devs[1]
	id := device.ID("acme", dev.Serial)

	// The device onboards at A, its owner, and is refused at B.
	ldevA, ldevKeyA := enrollAt(ctx, t, a, idevidCert(dev), dev.Serial)
	if _, _, err := tryEnroll(ctx, b, idevidCert(dev), dev.Serial); reasonOf(err) != "wrong_owner" {
		t.Fatalf("enrollment at B before the transfer: %v, want wrong_owner", err)
	}

	// A sells it to B. The record names B by B's owner.pub.
	bPub, err := os.ReadFile(filepath.Join(b.dir, owner.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	file := exportTransfer(ctx, t, a, admin.TransferExport{Device: id, ToName: "second-operator", ToKey: string(bPub)})
	envs, err := transfer.ParseFile(file)
	if err != nil || len(envs) != 1 {
		t.Fatalf("transfer file: %d records, %v", len(envs), err)
	}
	rec, err := transfer.Open(envs[0])
	if err != nil {
		t.Fatal(err)
	}
	if rec.Seq != 1 || rec.From.Name != "example-operator" || rec.FromKeyID != a.srv.Owner().KeyID() ||
		rec.To.Name != "second-operator" || rec.To.KeyID != b.srv.Owner().KeyID() || rec.DeviceID() != id {
		t.Fatalf("record %+v", rec.Record)
	}

	// At A: transferred, its LDevID revoked, renewal and enrollment refused,
	// and no second sale.
	da := deviceAt(ctx, t, a, id)
	if da.Device.State != device.Transferred || da.Device.Provenance.OwnerKey != b.srv.Owner().KeyID() {
		t.Fatalf("at A after the sale: %+v", da.Device)
	}
	revoked := 0
	for _, c := range da.Certificates {
		if c.Status.Usable() {
			t.Fatalf("certificate %s at A still %s", c.Serial, c.Status)
		}
		if c.Serial == fmt.Sprintf("%x", ldevA.SerialNumber) && c.Status == device.CertRevoked && c.Reason == "transferred to second-operator" {
			revoked++
		}
	}
	if revoked != 1 {
		t.Fatalf("LDevID %x not revoked at A: %+v", ldevA.SerialNumber, da.Certificates)
	}
	ldevChain := tls.Certificate{Certificate: [][]byte{ldevA.Raw, a.srv.CA().Intermediate().Raw}, PrivateKey: ldevKeyA}
	// The LDevID was revoked by the sale: A refuses it in the handshake.
	if err := tryRenew(ctx, a, ldevChain, dev.Serial); err == nil || !errors.Is(err, estclient.ErrHandshake) {
		t.Fatalf("renewal at A after the sale: %v, want the handshake refused", err)
	}
	if _, _, err := tryEnroll(ctx, a, idevidCert(dev), dev.Serial); reasonOf(err) != "wrong_owner" {
		t.Fatalf("enrollment at A after the sale: %v, want wrong_owner", err)
	}
	again, _ := json.Marshal(admin.TransferExport{Device: id, ToName: "third", ToKeyID: strings.Repeat("ab", 32)})
	if err := a.client.Do(ctx, http.MethodPost, "/v1/transfers/export", again, nil); apiStatus(err) != http.StatusForbidden {
		t.Fatalf("second sale at A: %v, want 403", err)
	}
	// A keeps the record: a lost answer does not lose the sale.
	var kept1 json.RawMessage
	if err := a.client.Do(ctx, http.MethodGet, "/v1/transfers/"+url.PathEscape(id), nil, &kept1); err != nil || string(kept1) != string(file) {
		t.Fatalf("GET the transfer file at A: %v", err)
	}

	// Bad input at B changes nothing: records signed by a key that does
	// not own the device (under another name, or under the owner's name but
	// not by the seller key B confirmed), one for another buyer, a tampered
	// and a truncated one.
	forger, err := owner.Init(t.TempDir(), "mallory")
	if err != nil {
		t.Fatal(err)
	}
	forge := func(fromName, toKeyID string) []byte {
		env, err := transfer.Sign(&transfer.Record{Manufacturer: "acme", Serial: dev.Serial, IDevIDKeySHA256: rec.IDevIDKeySHA256,
			Seq: 1, From: transfer.From{Name: fromName, Key: forger.Key.Public().Bytes()},
			To: transfer.To{Name: "second-operator", KeyID: toKeyID}, Created: time.Now()}, forger.Key)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	pinA := "?from_key=" + a.srv.Owner().KeyID()
	beforeB := deviceAt(ctx, t, b, id).Device
	before := auditLen(ctx, t, b)
	for _, bad := range []struct {
		name, query string
		body        []byte
		code        int
		msg         string
	}{
		{"signed by a non-owner", "", forge("mallory", b.srv.Owner().KeyID()), http.StatusForbidden, "not the current owner"},
		{"signed under the owner's name, not by the confirmed seller key", pinA, forge("example-operator", b.srv.Owner().KeyID()),
			http.StatusForbidden, "not by the seller key"},
		{"for another buyer", "", forge("mallory", a.srv.Owner().KeyID()), http.StatusForbidden, "addressed to another owner"},
		{"tampered", "", []byte(strings.Replace(string(file), `"payload":"`, `"payload":"x`, 1)), http.StatusBadRequest, "malformed"},
		{"truncated", "", file[:len(file)/2], http.StatusBadRequest, "malformed"},
	} {
		err := b.client.Do(ctx, http.MethodPost, "/v1/transfers"+bad.query, bad.body, nil)
		if apiStatus(err) != bad.code || !strings.Contains(fmt.Sprint(err), bad.msg) {
			t.Errorf("%s at B: %v, want %d %s", bad.name, err, bad.code, bad.msg)
		}
	}
	if n := auditLen(ctx, t, b); n != before {
		t.Fatalf("refused imports wrote %d audit entries", n-before)
	}
	if d := deviceAt(ctx, t, b, id).Device; d.Revision != beforeB.Revision {
		t.Fatalf("refused imports changed the device at B: %+v", d)
	}

	// B accepts the sale.
	var res transfer.Result
	if err := b.client.Do(ctx, http.MethodPost, "/v1/transfers"+pinA, file, &res); err != nil {
		t.Fatal(err)
	}
	if res.DeviceID != id || res.Seq != 1 || res.FromKey != a.srv.Owner().KeyID() || res.ToKey != b.srv.Owner().KeyID() ||
		!res.NameOnly || res.State != device.Expected {
		t.Fatalf("accepted %+v", res)
	}
	// A replay of the record is refused and changes nothing.
	before = auditLen(ctx, t, b)
	if err := b.client.Do(ctx, http.MethodPost, "/v1/transfers", file, nil); apiStatus(err) != http.StatusConflict ||
		!strings.Contains(err.Error(), "replayed") {
		t.Fatalf("replay at B: %v, want 409 replayed", err)
	}
	if n := auditLen(ctx, t, b); n != before {
		t.Fatalf("the replay wrote %d audit entries", n-before)
	}

	// After a factory reset the device enrolls at B with its IDevID and a
	// new key; the other device of the manifest is still A's.
	ldevB, ldevKeyB := enrollAt(ctx, t, b, idevidCert(dev), dev.Serial)
	if _, err := ldevB.Verify(x509.VerifyOptions{Roots: b.rootPool(), Intermediates: pool(b.srv.CA().Intermediate()),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Fatalf("LDevID from B: %v", err)
	}
	if db := deviceAt(ctx, t, b, id); db.Device.State != device.Onboarded || db.Device.Provenance.Owner != "second-operator" {
		t.Fatalf("at B: %+v", db.Device)
	}
	if _, _, err := tryEnroll(ctx, b, idevidCert(kept), kept.Serial); reasonOf(err) != "wrong_owner" {
		t.Fatalf("the other device at B: %v, want wrong_owner", err)
	}
	// A new manifest revision does not give the device back to A.
	if _, err := factory.Run(ctx, factory.Options{Out: fdir}); err != nil {
		t.Fatal(err)
	}
	b.importManifest(ctx, t, fdir)
	if db := deviceAt(ctx, t, b, id); db.Device.Provenance.OwnerKey != b.srv.Owner().KeyID() || db.Device.Provenance.Transfers != 1 {
		t.Fatalf("at B after a manifest revision: %+v", db.Device.Provenance)
	}

	// B sells it back to A: the file holds both records; A skips the one it
	// made and applies B's, signed by B's key (the registry names it now).
	aPub, err := os.ReadFile(filepath.Join(a.dir, owner.PublicFile))
	if err != nil {
		t.Fatal(err)
	}
	back := exportTransfer(ctx, t, b, admin.TransferExport{Device: id, ToName: "example-operator", ToKey: string(aPub)})
	if envs, err := transfer.ParseFile(back); err != nil || len(envs) != 2 {
		t.Fatalf("file back to A: %d records, %v", len(envs), err)
	}
	var resBack transfer.Result
	if err := a.client.Do(ctx, http.MethodPost, "/v1/transfers", back, &resBack); err != nil {
		t.Fatal(err)
	}
	if resBack.Seq != 2 || resBack.Applied != 1 || resBack.FromKey != b.srv.Owner().KeyID() || resBack.NameOnly {
		t.Fatalf("accepted back at A: %+v", resBack)
	}
	// Replays are refused: the file again at A, and at B the first record
	// (addressed to B, but older than B's sale back).
	if err := a.client.Do(ctx, http.MethodPost, "/v1/transfers", back, nil); apiStatus(err) != http.StatusConflict {
		t.Fatalf("replay at A: %v, want 409", err)
	}
	if err := b.client.Do(ctx, http.MethodPost, "/v1/transfers", file, nil); apiStatus(err) != http.StatusConflict ||
		!strings.Contains(err.Error(), "older") {
		t.Fatalf("older record at B: %v, want 409 older", err)
	}
	enrollAt(ctx, t, a, idevidCert(dev), dev.Serial)
	ldevChainB := tls.Certificate{Certificate: [][]byte{ldevB.Raw, b.srv.CA().Intermediate().Raw}, PrivateKey: ldevKeyB}
	if err := tryRenew(ctx, b, ldevChainB, dev.Serial); err == nil || !errors.Is(err, estclient.ErrHandshake) {
		t.Fatalf("renewal at B after the sale back: %v, want the handshake refused (LDevID revoked by the sale)", err)
	}
}

func idevidCert(d factory.Device) tls.Certificate {
	c := tls.Certificate{PrivateKey: d.Key, Leaf: d.Chain[0]}
	for _, x := range d.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// newCSR makes a fresh device key (a factory reset) and its CSR.
func newCSR(serial string) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: serial}}, key)
	return key, csr, err
}

// tryEnroll enrolls over CoAP/DTLS at e with a new key, authenticated by
// the client certificate cert.
func tryEnroll(ctx context.Context, e *embark, cert tls.Certificate, serial string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, csr, err := newCSR(serial)
	if err != nil {
		return nil, nil, err
	}
	cl, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + e.srv.UDPAddr().String(), Roots: e.rootPool(),
		Certificate: &cert, Timeout: 20 * time.Second})
	if err != nil {
		return nil, nil, err
	}
	defer cl.Close()
	got, err := cl.Enroll(ctx, csr)
	return got, key, err
}

func enrollAt(ctx context.Context, t *testing.T, e *embark, cert tls.Certificate, serial string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	got, key, err := tryEnroll(ctx, e, cert, serial)
	if err != nil {
		t.Fatalf("enroll %s: %v", serial, err)
	}
	return got, key
}

// tryRenew re-enrolls over CoAP/DTLS at e, authenticated by an LDevID.
func tryRenew(ctx context.Context, e *embark, ldevid tls.Certificate, serial string) error {
	_, csr, err := newCSR(serial)
	if err != nil {
		return err
	}
	cl, err := estclient.Dial(ctx, estclient.Config{Target: "coaps://" + e.srv.UDPAddr().String(), Roots: e.rootPool(),
		Certificate: &ldevid, Timeout: 20 * time.Second})
	if err != nil {
		return err
	}
	defer cl.Close()
	_, err = cl.Reenroll(ctx, csr)
	return err
}

// reasonOf returns the reason code of a CoAP error answer, or the error.
func reasonOf(err error) string {
	var se *estclient.StatusError
	if errors.As(err, &se) {
		return se.Reason
	}
	return fmt.Sprint(err)
}

func apiStatus(err error) int {
	var ae *admin.APIError
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

func exportTransfer(ctx context.Context, t *testing.T, e *embark, req admin.TransferExport) []byte {
	t.Helper()
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	var file json.RawMessage
	if err := e.client.Do(ctx, http.MethodPost, "/v1/transfers/export", body, &file); err != nil {
		t.Fatalf("export %s: %v", req.Device, err)
	}
	return file
}

func deviceAt(ctx context.Context, t *testing.T, e *embark, id string) admin.DeviceDetail {
	t.Helper()
	var d admin.DeviceDetail
	if err := e.client.Do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(id), nil, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func auditLen(ctx context.Context, t *testing.T, e *embark) int {
	t.Helper()
	st, err := e.srv.Store().Stats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st.AuditEntries
}

func (e *embark) importManifest(ctx context.Context, t *testing.T, factoryDir string) {
	t.Helper()
	env, err := os.ReadFile(filepath.Join(factoryDir, factory.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.client.Do(ctx, http.MethodPost, "/v1/manifests", env, nil); err != nil {
		t.Fatal(err)
	}
}
