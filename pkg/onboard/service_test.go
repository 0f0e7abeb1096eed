package onboard

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/devattr"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pki"
)

// clock is a settable fake clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time          { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t testing.TB, tmpl *x509.Certificate, pub any, parent *issuer, selfKey *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl.SerialNumber = sn
	var der []byte
	var err error
	if parent == nil {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, selfKey)
	} else {
		der, err = x509.CreateCertificate(rand.Reader, tmpl, parent.cert, pub, parent.key)
	}
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newCA(t testing.TB, name string, parent *issuer, now time.Time) *issuer {
	k := newKey(t)
	c := sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: name}, NotBefore: now.AddDate(-1, 0, 0), NotAfter: now.AddDate(20, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, &k.PublicKey, parent, k)
	return &issuer{cert: c, key: k}
}

type dev struct {
	serial string
	key    *ecdsa.PrivateKey
	chain  []*x509.Certificate
}

func newDevice(t testing.TB, serial string, ca *issuer, nb, na time.Time) dev {
	k := newKey(t)
	c := sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: serial, SerialNumber: serial}, NotBefore: nb, NotAfter: na,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, &k.PublicKey, ca, nil)
	return dev{serial: serial, key: k, chain: []*x509.Certificate{c, ca.cert}}
}

func csrFor(t testing.TB, k any) []byte {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

var noExpiry = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)

type fixture struct {
	t     *testing.T
	clock *clock
	st    store.Store
	ca    *pki.CA
	svc   *Service
	inter *issuer
	devs  map[string]dev
}

// setup builds a service with manufacturer "acme" and registered devices SN1..SN4.
func setup(t *testing.T, opts ...Option) *fixture {
	t.Helper()
	clk := &clock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	now := clk.Now()
	dir := t.TempDir()
	st, err := bolt.Open(filepath.Join(dir, "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.Init(filepath.Join(dir, "ca"), pki.WithClock(clk.Now))
	if err != nil {
		t.Fatal(err)
	}
	root := newCA(t, "Acme Root", nil, now)
	inter := newCA(t, "Acme IDevID CA", root, now)
	f := &fixture{t: t, clock: clk, st: st, ca: ca, inter: inter, devs: map[string]dev{}}
	f.devs["SN1"] = newDevice(t, "SN1", inter, now.Add(-time.Hour), noExpiry)
	f.devs["SN2"] = newDevice(t, "SN2", inter, now.Add(-time.Hour), noExpiry)
	f.devs["SN3"] = newDevice(t, "SN3", inter, now.AddDate(-2, 0, 0), now.Add(-time.Minute)) // expired IDevID
	f.devs["SN4"] = newDevice(t, "SN4", inter, now.Add(-time.Hour), noExpiry)
	ctx := context.Background()
	err = st.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutManufacturer(device.Manufacturer{Name: "acme", Roots: [][]byte{root.cert.Raw}, TrustedAt: now}); err != nil {
			return err
		}
		for serial, d := range f.devs {
			rec := device.Device{ID: device.ID("acme", serial), State: device.Expected, UpdatedAt: now,
				Provenance: device.Provenance{Manufacturer: "acme", Serial: serial, IDevIDKeySHA256: keyFingerprint(d.chain[0].RawSubjectPublicKeyInfo)}}
			if err := tx.PutDevice(&rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(ctx, st, ca, append([]Option{WithClock(clk.Now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	return f
}

func (f *fixture) enroll(d dev, csrKey any) (*Result, error) {
	return f.svc.Enroll(context.Background(), Request{Chain: d.chain, CSR: csrFor(f.t, csrKey), Transport: "test"})
}

func (f *fixture) renew(cert *x509.Certificate, csrKey any) (*Result, error) {
	return f.svc.Renew(context.Background(), Request{Chain: []*x509.Certificate{cert}, CSR: csrFor(f.t, csrKey), Transport: "test"})
}

func (f *fixture) device(serial string) device.Device {
	var d device.Device
	if err := f.st.View(context.Background(), func(r store.Reader) error {
		var err error
		d, err = r.Device(device.ID("acme", serial))
		return err
	}); err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *fixture) certs(serial string) []device.Certificate {
	var cs []device.Certificate
	if err := f.st.View(context.Background(), func(r store.Reader) error {
		var err error
		cs, err = r.CertificatesOf(device.ID("acme", serial))
		return err
	}); err != nil {
		f.t.Fatal(err)
	}
	return cs
}

// snapshot captures what must not change when a request is refused.
type snapshot struct {
	stats   store.Stats
	devices map[string]device.Device
}

func (f *fixture) snapshot() snapshot {
	s := snapshot{devices: map[string]device.Device{}}
	st, err := f.st.Stats(context.Background())
	if err != nil {
		f.t.Fatal(err)
	}
	s.stats = st
	s.stats.Bytes = 0
	for serial := range f.devs {
		s.devices[serial] = f.device(serial)
	}
	return s
}

func wantReason(t *testing.T, err error, r Reason) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Reason != r {
		t.Fatalf("err = %v, want reason %s", err, r)
	}
	return e
}

func TestEnrollIssuesLDevID(t *testing.T) {
	f := setup(t)
	d := f.devs["SN1"]
	k := newKey(t)
	res, err := f.enroll(d, k)
	if err != nil {
		t.Fatal(err)
	}
	c := res.Certificate
	roots := x509.NewCertPool()
	roots.AddCert(f.ca.Root())
	inters := x509.NewCertPool()
	inters.AddCert(f.ca.Intermediate())
	if _, err := c.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: f.clock.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("LDevID does not chain to the Embark root: %v", err)
	}
	if len(c.URIs) != 1 || c.URIs[0].String() != device.ID("acme", "SN1") {
		t.Fatalf("URI SANs = %v", c.URIs)
	}
	if c.Subject.CommonName == "ignored" {
		t.Fatal("LDevID took the subject the CSR asked for")
	}
	got := f.device("SN1")
	if got.State != device.Onboarded || got.Current != SerialHex(c) || got.Zone != "default" || got.Enrollments != 1 {
		t.Fatalf("device after enroll = %+v", got)
	}
	if res.Replayed {
		t.Fatal("first enrollment marked replayed")
	}
	// The decision's audit entry names the data versions it rested on.
	var last audit.Entry
	if err := f.st.View(context.Background(), func(r store.Reader) error {
		var err error
		last, err = r.LastAudit()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if last.Action != "enroll" || last.Cert != SerialHex(c) || !strings.Contains(last.Detail, "data m0 v0") ||
		last.Policy != "builtin/allow-known" {
		t.Fatalf("audit entry = %+v", last)
	}
}

func TestEnrollmentSemantics(t *testing.T) {
	t.Run("ok/retry-after-lost-response-returns-same-certificate", func(t *testing.T) {
		f := setup(t)
		k := newKey(t)
		first, err := f.enroll(f.devs["SN1"], k)
		if err != nil {
			t.Fatal(err)
		}
		second, err := f.enroll(f.devs["SN1"], k)
		if err != nil {
			t.Fatal(err)
		}
		if !second.Replayed || SerialHex(second.Certificate) != SerialHex(first.Certificate) {
			t.Fatalf("retry got serial %s (replayed %v), want %s", SerialHex(second.Certificate), second.Replayed, SerialHex(first.Certificate))
		}
		if n := len(f.certs("SN1")); n != 1 {
			t.Fatalf("%d certificates stored, want 1", n)
		}
	})
	t.Run("ok/reboot-mid-enrollment-supersedes-unused", func(t *testing.T) {
		f := setup(t)
		first, err := f.enroll(f.devs["SN1"], newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		second, err := f.enroll(f.devs["SN1"], newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		d := f.device("SN1")
		if d.Current != SerialHex(second.Certificate) {
			t.Fatalf("current = %s, want the new certificate", d.Current)
		}
		for _, c := range f.certs("SN1") {
			if c.Serial == SerialHex(first.Certificate) && c.Status != device.CertSuperseded {
				t.Fatalf("unused LDevID status = %s, want superseded", c.Status)
			}
		}
	})
	t.Run("hold/new-key-while-ldevid-in-use", func(t *testing.T) {
		f := setup(t)
		k := newKey(t)
		first, err := f.enroll(f.devs["SN1"], k)
		if err != nil {
			t.Fatal(err)
		}
		// Renewing puts the LDevID in use.
		if _, err := f.renew(first.Certificate, k); err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Minute)
		_, err = f.enroll(f.devs["SN1"], newKey(t))
		e := wantReason(t, err, ReasonHeld)
		if !e.Retryable() {
			t.Fatal("held answer without RetryAfter")
		}
		if d := f.device("SN1"); d.State != device.Held {
			t.Fatalf("state = %s, want held", d.State)
		}
	})
	t.Run("fail/clone-same-serial-other-key", func(t *testing.T) {
		f := setup(t)
		clone := newDevice(t, "SN1", f.inter, f.clock.Now().Add(-time.Hour), noExpiry)
		_, err := f.enroll(clone, newKey(t))
		wantReason(t, err, ReasonCloneSuspected)
		if d := f.device("SN1"); d.State != device.Held || d.Current != "" {
			t.Fatalf("device after clone attempt = %+v, want held without certificate", d)
		}
	})
	t.Run("fail/unknown-key-creates-nothing", func(t *testing.T) {
		f := setup(t)
		before := f.snapshot()
		stranger := newDevice(t, "SN99", f.inter, f.clock.Now().Add(-time.Hour), noExpiry)
		_, err := f.enroll(stranger, newKey(t))
		wantReason(t, err, ReasonUnknownDevice)
		after := f.snapshot()
		if after.stats.Devices != before.stats.Devices || after.stats.Certificates != before.stats.Certificates {
			t.Fatalf("registry changed: %+v -> %+v", before.stats, after.stats)
		}
		if after.stats.AuditEntries != before.stats.AuditEntries+1 {
			t.Fatalf("audit entries %d -> %d, want one more", before.stats.AuditEntries, after.stats.AuditEntries)
		}
	})
	t.Run("ok/idevid-without-expiry-99991231235959Z", func(t *testing.T) {
		f := setup(t)
		if got := f.devs["SN2"].chain[0].NotAfter; !got.Equal(noExpiry) {
			t.Fatalf("fixture notAfter = %v", got)
		}
		f.clock.Advance(3 * 365 * 24 * time.Hour) // years later: still valid
		if _, err := f.enroll(f.devs["SN2"], newKey(t)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("ok/expired-idevid-allowed-as-fact-goes-to-policy", func(t *testing.T) {
		f := setup(t, WithAllowExpiredIDevID(true))
		_, err := f.enroll(f.devs["SN3"], newKey(t))
		wantReason(t, err, ReasonDenied) // the builtin decider refuses expired IDevIDs
		if d := f.device("SN3"); d.State != device.Denied {
			t.Fatalf("state = %s, want denied", d.State)
		}
	})
}

func csrReporting(t *testing.T, k any, r devattr.Reported) []byte {
	t.Helper()
	exts, err := devattr.Extensions(r)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{ExtraExtensions: exts}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestReportedFirmware(t *testing.T) {
	const digest = "1111111111111111111111111111111111111111111111111111111111111111"
	tests := []struct {
		name     string
		reported devattr.Reported
		state    device.State
		zone     string
	}{
		{"ok/matches-manifest", devattr.Reported{FirmwareVersion: "1.4.2", FirmwareSHA256: digest}, device.Onboarded, "default"},
		{"ok/nothing-reported", devattr.Reported{}, device.Onboarded, "default"},
		{"fail/other-version-quarantined", devattr.Reported{FirmwareVersion: "6.6.6", FirmwareSHA256: digest}, device.Quarantined, "quarantine"},
		{"fail/other-digest-quarantined", devattr.Reported{FirmwareVersion: "1.4.2", FirmwareSHA256: strings.Repeat("2", 64)}, device.Quarantined, "quarantine"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := setup(t)
			if err := f.st.Update(context.Background(), func(tx store.Tx) error {
				d, err := tx.Device(device.ID("acme", "SN1"))
				if err != nil {
					return err
				}
				d.Provenance.FirmwareVersion, d.Provenance.FirmwareSHA256 = "1.4.2", digest
				return tx.PutDevice(&d)
			}); err != nil {
				t.Fatal(err)
			}
			res, err := f.svc.Enroll(context.Background(), Request{Chain: f.devs["SN1"].chain, CSR: csrReporting(t, newKey(t), tt.reported), Transport: "test", Remote: "192.0.2.1:5684"})
			if err != nil {
				t.Fatal(err)
			}
			d := f.device("SN1")
			if d.State != tt.state || d.Zone != tt.zone || res.Zone != tt.zone {
				t.Fatalf("state %s zone %s, want %s %s (reason %q)", d.State, d.Zone, tt.state, tt.zone, d.Reason)
			}
			if d.Reported.FirmwareVersion != tt.reported.FirmwareVersion || d.Reported.Digest(d.Provenance.FirmwareSHA256) != tt.reported.FirmwareSHA256 ||
				d.Reported.Remote != "192.0.2.1:5684" {
				t.Fatalf("reported = %+v", d.Reported)
			}
		})
	}
	t.Run("fail/malformed-attribute", func(t *testing.T) {
		f := setup(t)
		bad := []pkix.Extension{{Id: devattr.OIDFirmwareVersion, Value: []byte{0x30, 0x01}}}
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{ExtraExtensions: bad}, newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		before := f.snapshot()
		_, err = f.svc.Enroll(context.Background(), Request{Chain: f.devs["SN1"].chain, CSR: der})
		wantReason(t, err, ReasonMalformedCSR)
		if after := f.snapshot(); after.stats != before.stats {
			t.Fatal("registry changed")
		}
	})
}

func TestConcurrentRetriesIssueOneCertificate(t *testing.T) {
	f := setup(t)
	k := newKey(t)
	csr := csrFor(t, k)
	var wg sync.WaitGroup
	serials := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.svc.Enroll(context.Background(), Request{Chain: f.devs["SN1"].chain, CSR: csr})
			if err != nil {
				t.Error(err)
				return
			}
			serials <- SerialHex(res.Certificate)
		}()
	}
	wg.Wait()
	close(serials)
	seen := map[string]bool{}
	for s := range serials {
		seen[s] = true
	}
	if len(seen) != 1 {
		t.Fatalf("%d distinct certificates for one request, want 1", len(seen))
	}
	var usable int
	for _, c := range f.certs("SN1") {
		if c.Status.Usable() {
			usable++
		}
	}
	if usable != 1 {
		t.Fatalf("%d usable certificates, want 1", usable)
	}
}

func TestRenewalSemantics(t *testing.T) {
	t.Run("ok/renew-rekey", func(t *testing.T) {
		f := setup(t)
		first, err := f.enroll(f.devs["SN1"], newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		f.clock.Advance(time.Hour)
		second, err := f.renew(first.Certificate, newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		d := f.device("SN1")
		if d.Current != SerialHex(second.Certificate) || d.Previous != SerialHex(first.Certificate) || d.Renewals != 1 {
			t.Fatalf("device after renew = %+v", d)
		}
	})
	t.Run("ok/lost-renewal-response-replays", func(t *testing.T) {
		f := setup(t)
		first, _ := f.enroll(f.devs["SN1"], newKey(t))
		k := newKey(t)
		a, err := f.renew(first.Certificate, k)
		if err != nil {
			t.Fatal(err)
		}
		b, err := f.renew(first.Certificate, k)
		if err != nil {
			t.Fatal(err)
		}
		if !b.Replayed || SerialHex(a.Certificate) != SerialHex(b.Certificate) {
			t.Fatal("repeated renewal issued a second certificate")
		}
	})
	t.Run("ok/previous-renews-while-successor-unseen", func(t *testing.T) {
		f := setup(t)
		first, _ := f.enroll(f.devs["SN1"], newKey(t))
		lost, err := f.renew(first.Certificate, newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		// The device never got "lost" and renews again with a new key.
		again, err := f.renew(first.Certificate, newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		d := f.device("SN1")
		if d.Current != SerialHex(again.Certificate) {
			t.Fatal("current is not the latest renewal")
		}
		for _, c := range f.certs("SN1") {
			if c.Serial == SerialHex(lost.Certificate) && c.Status != device.CertSuperseded {
				t.Fatalf("unseen successor status = %s, want superseded", c.Status)
			}
		}
	})
	t.Run("fail/previous-after-successor-in-use", func(t *testing.T) {
		f := setup(t)
		first, _ := f.enroll(f.devs["SN1"], newKey(t))
		second, _ := f.renew(first.Certificate, newKey(t))
		if _, err := f.renew(second.Certificate, newKey(t)); err != nil { // second now in use
			t.Fatal(err)
		}
		before := f.snapshot()
		_, err := f.renew(first.Certificate, newKey(t))
		wantReason(t, err, ReasonNotCurrent)
		if after := f.snapshot(); after.stats != before.stats {
			t.Fatalf("registry changed: %+v -> %+v", before.stats, after.stats)
		}
	})
	t.Run("fail/expired-ldevid", func(t *testing.T) {
		f := setup(t)
		first, _ := f.enroll(f.devs["SN1"], newKey(t))
		f.clock.Advance(31 * 24 * time.Hour)
		_, err := f.renew(first.Certificate, newKey(t))
		wantReason(t, err, ReasonExpiredChain)
	})
}

func TestCloneDetection(t *testing.T) {
	renewFrom := func(f *fixture, c *x509.Certificate, remote string) (*Result, error) {
		return f.svc.Renew(context.Background(), Request{Chain: []*x509.Certificate{c}, CSR: csrFor(t, newKey(t)), Remote: remote})
	}
	t.Run("fail/two-ldevids-in-use-from-different-endpoints", func(t *testing.T) {
		f := setup(t)
		a, err := f.svc.Enroll(context.Background(), Request{Chain: f.devs["SN1"].chain, CSR: csrFor(t, newKey(t)), Remote: "192.0.2.1:1000"})
		if err != nil {
			t.Fatal(err)
		}
		b, err := renewFrom(f, a.Certificate, "192.0.2.1:1001")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := renewFrom(f, b.Certificate, "192.0.2.1:1002"); err != nil {
			t.Fatal(err)
		}
		// The first LDevID, in use before, now comes from elsewhere.
		_, err = renewFrom(f, a.Certificate, "198.51.100.7:2000")
		wantReason(t, err, ReasonCloneSuspected)
		d := f.device("SN1")
		if d.State != device.Held || d.Flags.Clone == "" {
			t.Fatalf("device = %s, clone flag %q; want held and flagged", d.State, d.Flags.Clone)
		}
	})
	t.Run("ok/same-endpoint-is-not-a-clone", func(t *testing.T) {
		f := setup(t)
		a, _ := f.svc.Enroll(context.Background(), Request{Chain: f.devs["SN1"].chain, CSR: csrFor(t, newKey(t)), Remote: "192.0.2.1:1000"})
		b, _ := renewFrom(f, a.Certificate, "192.0.2.1:1001")
		if _, err := renewFrom(f, b.Certificate, "192.0.2.1:1002"); err != nil {
			t.Fatal(err)
		}
		_, err := renewFrom(f, a.Certificate, "192.0.2.1:1003")
		wantReason(t, err, ReasonNotCurrent)
		if d := f.device("SN1"); d.State != device.Onboarded || d.Flags.Clone != "" {
			t.Fatalf("device = %s, flag %q", d.State, d.Flags.Clone)
		}
	})
	t.Run("ok/reboot-mid-enrollment-is-not-a-clone", func(t *testing.T) {
		f := setup(t)
		a, _ := f.svc.Enroll(context.Background(), Request{Chain: f.devs["SN1"].chain, CSR: csrFor(t, newKey(t)), Remote: "192.0.2.1:1000"})
		b, err := f.svc.Enroll(context.Background(), Request{Chain: f.devs["SN1"].chain, CSR: csrFor(t, newKey(t)), Remote: "192.0.2.9:1000"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := renewFrom(f, b.Certificate, "192.0.2.9:1001"); err != nil {
			t.Fatal(err)
		}
		_, err = renewFrom(f, a.Certificate, "198.51.100.7:2000")
		wantReason(t, err, ReasonNotCurrent)
		if d := f.device("SN1"); d.State != device.Onboarded || d.Flags.Clone != "" {
			t.Fatalf("device = %s, flag %q", d.State, d.Flags.Clone)
		}
	})
}

func TestBadInput(t *testing.T) {
	f := setup(t)
	good, err := f.enroll(f.devs["SN4"], newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	now := f.clock.Now()
	otherRoot := newCA(t, "Acme Root", nil, now)
	otherInter := newCA(t, "Acme IDevID CA", otherRoot, now)
	untrusted := newDevice(t, "SN1", otherInter, now.Add(-time.Hour), noExpiry)
	future := newDevice(t, "SN1", f.inter, now.Add(time.Hour), noExpiry)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	badSig := csrFor(t, newKey(t))
	badSig[len(badSig)-3] ^= 0xff

	tests := []struct {
		name  string
		renew bool
		chain []*x509.Certificate
		csr   []byte
		want  Reason
	}{
		{"fail/no-client-certificate", false, nil, csrFor(t, newKey(t)), ReasonUnauthenticated},
		{"fail/untrusted-ca", false, untrusted.chain, csrFor(t, newKey(t)), ReasonUntrustedChain},
		{"fail/expired-idevid", false, f.devs["SN3"].chain, csrFor(t, newKey(t)), ReasonExpiredChain},
		{"fail/not-yet-valid-idevid", false, future.chain, csrFor(t, newKey(t)), ReasonNotYetValid},
		{"fail/malformed-csr", false, f.devs["SN1"].chain, []byte("not a csr"), ReasonMalformedCSR},
		{"fail/empty-csr", false, f.devs["SN1"].chain, nil, ReasonMalformedCSR},
		{"fail/csr-signature", false, f.devs["SN1"].chain, badSig, ReasonCSRSignature},
		{"fail/rsa-key", false, f.devs["SN1"].chain, csrFor(t, rsaKey), ReasonUnsupportedKey},
		{"fail/oversized-csr", false, f.devs["SN1"].chain, make([]byte, MaxCSRSize+1), ReasonPayloadTooLarge},
		{"fail/ldevid-on-enroll", false, []*x509.Certificate{good.Certificate}, csrFor(t, newKey(t)), ReasonWrongCredential},
		{"fail/idevid-on-renew", true, f.devs["SN1"].chain, csrFor(t, newKey(t)), ReasonWrongCredential},
		{"fail/no-certificate-on-renew", true, nil, csrFor(t, newKey(t)), ReasonUnauthenticated},
		{"fail/foreign-cert-on-renew", true, untrusted.chain, csrFor(t, newKey(t)), ReasonUntrustedChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.snapshot()
			req := Request{Chain: tt.chain, CSR: tt.csr, Transport: "test"}
			var err error
			if tt.renew {
				_, err = f.svc.Renew(context.Background(), req)
			} else {
				_, err = f.svc.Enroll(context.Background(), req)
			}
			wantReason(t, err, tt.want)
			after := f.snapshot()
			if after.stats != before.stats {
				t.Fatalf("registry changed: %+v -> %+v", before.stats, after.stats)
			}
			for serial, d := range before.devices {
				if !reflect.DeepEqual(after.devices[serial], d) {
					t.Fatalf("device %s changed: %+v -> %+v", serial, d, after.devices[serial])
				}
			}
		})
	}
}

func TestOverloadedAnswersRetryLater(t *testing.T) {
	f := setup(t, WithMaxInFlight(1, 3*time.Second))
	f.svc.sem <- struct{}{} // one request in progress
	_, err := f.enroll(f.devs["SN1"], newKey(t))
	e := wantReason(t, err, ReasonOverloaded)
	if e.RetryAfter != 3*time.Second {
		t.Fatalf("RetryAfter = %s", e.RetryAfter)
	}
	<-f.svc.sem
	if _, err := f.enroll(f.devs["SN1"], newKey(t)); err != nil {
		t.Fatal(err)
	}
}
