package masa

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/voucher"
)

var nonce = []byte("fresh-nonce-0001")

func TestRequestVoucher(t *testing.T) {
	byNameKey, _ := hybridsig.GenerateKey(nil)
	tm := newTestMASA(t, func(o *Options) {
		o.OwnerKeys = map[string]*hybridsig.PublicKey{"by-name": byNameKey.Public()}
	})
	tm.register(t, tm.a)
	tm.register(t, tm.b)
	unregistered := newDomain(t, "stranger")
	a := tm.a
	dev1 := tm.devices["ACME-000001"]
	proximity := raws(a.server)
	nonced := func(dev string, edit func(r *voucher.RegistrarRequest)) voucher.RegistrarRequest {
		d := tm.devices[dev]
		r := voucher.RegistrarRequest{SerialNumber: dev, Nonce: nonce, PledgeRequest: pledge(t, d, dev, nonce, a.server[0]), ProximityChain: proximity}
		if edit != nil {
			edit(&r)
		}
		return r
	}
	// A device certificate of the domain (an LDevID): chains to the
	// domain CA with clientAuth, but is no registrar.
	ldevid := a.issue(t, "ACME-000001", false, x509.ExtKeyUsageClientAuth)
	otherRegistrar := a.issue(t, "owner-a registrar 2", true, x509.ExtKeyUsageClientAuth)
	// An IDevID for ACME-000002 with another key, issued by the same CA.
	mfr := tm.m.mfr
	clone, cloneKey := mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ACME-000002", SerialNumber: "ACME-000002"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, mfr.Intermediate,
		readKey(t, filepath.Join(tm.dir, factory.IntermediateKeyFile)))
	cloneDev := tm.devices["ACME-000002"]
	cloneDev.Key, cloneDev.Chain = cloneKey, []*x509.Certificate{clone}
	// An IDevID of another manufacturer with serial ACME-000002.
	stranger := newDomain(t, "globex")
	foreign, foreignKey := mkCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ACME-000002", SerialNumber: "ACME-000002"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, stranger.inter, stranger.interKey)
	foreignDev := tm.devices["ACME-000002"]
	foreignDev.Key, foreignDev.Chain = foreignKey, []*x509.Certificate{foreign}

	tests := []struct {
		name   string
		cert   *tls.Certificate
		body   []byte
		code   int
		reason Reason
	}{
		{"ok/nonced", &a.registrar, registrarRequest(t, a.registrar, nonced("ACME-000001", nil)), 200, ""},
		{"ok/nonceless", &a.registrar, registrarRequest(t, a.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000002",
			ExpiresOn: time.Now().Add(365 * 24 * time.Hour)}), 200, ""},
		{"fail/no-client-certificate", nil, registrarRequest(t, a.registrar, nonced("ACME-000001", nil)), 403, ReasonUnauthenticatedRegistrar},
		{"fail/unregistered-domain", &unregistered.registrar, registrarRequest(t, unregistered.registrar, nonced("ACME-000001", nil)), 403, ReasonUnauthenticatedRegistrar},
		{"fail/ldevid-is-no-registrar", &ldevid, registrarRequest(t, ldevid, nonced("ACME-000001", nil)), 403, ReasonUnauthenticatedRegistrar},
		{"fail/signed-by-another-registrar", &a.registrar, registrarRequest(t, otherRegistrar, nonced("ACME-000001", nil)), 403, ReasonRegistrarMismatch},
		{"fail/unknown-device", &a.registrar, registrarRequest(t, a.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-999999",
			ExpiresOn: time.Now().Add(time.Hour)}), 404, ReasonUnknownDevice},
		{"fail/clone", &a.registrar, registrarRequest(t, a.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000002", Nonce: nonce,
			PledgeRequest: pledge(t, cloneDev, "ACME-000002", nonce, a.server[0]), ProximityChain: proximity}), 403, ReasonCloneSuspected},
		{"fail/idevid-of-another-manufacturer", &a.registrar, registrarRequest(t, a.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000002", Nonce: nonce,
			PledgeRequest: pledge(t, foreignDev, "ACME-000002", nonce, a.server[0]), ProximityChain: proximity}), 403, ReasonUntrustedIDevID},
		{"fail/device-saw-another-registrar", &a.registrar, registrarRequest(t, a.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000001", Nonce: nonce,
			PledgeRequest: pledge(t, dev1, "ACME-000001", nonce, tm.b.server[0]), ProximityChain: proximity}), 403, ReasonProximityMismatch},
		{"fail/proximity-chain-of-another-domain", &a.registrar, registrarRequest(t, a.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000001", Nonce: nonce,
			PledgeRequest: pledge(t, dev1, "ACME-000001", nonce, tm.b.server[0]), ProximityChain: raws(tm.b.server)}), 403, ReasonProximityMismatch},
		{"fail/sold-to-another-owner", &a.registrar, registrarRequest(t, a.registrar, nonced("ACME-000004", nil)), 403, ReasonWrongOwner},
		{"fail/rogue-owner", &tm.b.registrar, registrarRequest(t, tm.b.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000001", Nonce: nonce,
			PledgeRequest: pledge(t, dev1, "ACME-000001", nonce, tm.b.server[0]), ProximityChain: raws(tm.b.server)}), 403, ReasonWrongOwner},
		{"fail/garbage", &a.registrar, []byte("not a request"), 400, ReasonBadRequest},
	}
	anchors := tm.fw.VoucherAnchors
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tm.m.Stats()
			code, body, reason, hdr := tm.post(t, tm.client(tt.cert, nil), voucher.PathMASARequestVoucher, voucher.MediaTypeVoucherCOSE, tt.body)
			if code != tt.code || Reason(reason) != tt.reason {
				t.Fatalf("answer %d %q (%s), want %d %q", code, reason, body, tt.code, tt.reason)
			}
			if g := hdr.Get(HeaderTLSGroup); g != "X25519MLKEM768" {
				t.Fatalf("TLS group header %q", g)
			}
			after := tm.m.Stats()
			if tt.code != 200 {
				if after.Issued != before.Issued || after.Refused != before.Refused+1 {
					t.Fatalf("stats %+v → %+v", before, after)
				}
				return
			}
			v, kid, err := voucher.OpenCountersigned(body, func(id string) (*hybridsig.PublicKey, bool) {
				return tm.m.mfr.ManifestSigner.Public(), id == tm.m.mfr.ManifestSigner.Public().KeyID()
			})
			if err != nil || kid == "" {
				t.Fatalf("countersignature: %v", err)
			}
			sr, _ := voucher.OpenRegistrarRequest(tt.body)
			o := voucher.VerifyOptions{Anchors: anchors, Serial: sr.SerialNumber, Nonce: sr.Nonce}
			if sr.Pledge == nil {
				o.Now, o.AllowNonceless = time.Now, true
			}
			got, err := voucher.Verify(v, o)
			if err != nil {
				t.Fatalf("the device refuses the voucher: %v", err)
			}
			if !got.Nonceless() != (sr.Pledge != nil) || got.Assertion != voucher.AssertionVerified {
				t.Fatalf("voucher %+v", got)
			}
			pinned, _ := got.Pinned()
			if !pinned.Equal(a.root) {
				t.Fatalf("pinned %s, want owner-a's root", pinned.Subject)
			}
			if got.Nonceless() && got.ExpiresOn.After(time.Now().Add(DefaultMaxNonceless+time.Minute)) {
				t.Fatalf("nonceless voucher expires %s, beyond the bound", got.ExpiresOn)
			}
		})
	}

	t.Run("ok/sold-by-name-with-a-configured-key", func(t *testing.T) {
		byName := newDomain(t, "by-name")
		byName.owner = byNameKey
		tm.register(t, byName)
		req := registrarRequest(t, byName.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000005", Nonce: nonce,
			PledgeRequest: pledge(t, tm.devices["ACME-000005"], "ACME-000005", nonce, byName.server[0]), ProximityChain: raws(byName.server)})
		if code, body, _, _ := tm.post(t, tm.client(&byName.registrar, nil), voucher.PathMASARequestVoucher, voucher.MediaTypeVoucherCOSE, req); code != 200 {
			t.Fatalf("answer %d %s", code, body)
		}
	})

	t.Run("ok/every request is logged", func(t *testing.T) {
		f, err := os.Open(filepath.Join(tm.dir, LogFile))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		counts := map[string]int{}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var r logRecord
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				t.Fatal(err)
			}
			counts[r.Event]++
			if r.Event == "voucher" && (r.Voucher == "" || r.TLS != "TLS1.3 X25519MLKEM768" || r.OwnerKey == "" || r.Serial == "") {
				t.Errorf("voucher line %s", sc.Bytes())
			}
			if r.Event == "refused" && r.Reason == "" {
				t.Errorf("refusal without reason: %s", sc.Bytes())
			}
		}
		st := tm.m.Stats()
		if uint64(counts["voucher"]) != st.Issued || uint64(counts["refused"]) != st.Refused || counts["registration"] != 3 {
			t.Fatalf("log %v, stats %+v", counts, st)
		}
	})
}

func TestNoOwnerKey(t *testing.T) {
	tm := newTestMASA(t)
	tm.register(t, tm.a)
	req := registrarRequest(t, tm.a.registrar, voucher.RegistrarRequest{SerialNumber: "ACME-000005", ExpiresOn: time.Now().Add(time.Hour)})
	code, _, reason, _ := tm.post(t, tm.client(&tm.a.registrar, nil), voucher.PathMASARequestVoucher, voucher.MediaTypeVoucherCOSE, req)
	if code != 403 || Reason(reason) != ReasonNoOwnerKey {
		t.Fatalf("answer %d %q", code, reason)
	}
}

func TestRegister(t *testing.T) {
	tm := newTestMASA(t)
	a, b := tm.a, tm.b
	now := time.Now()
	thief := newDomain(t, "thief")
	// The thief registers owner A's CA as its own: it signs with its key,
	// but cannot present a registrar certificate of A's CA.
	stolen, _ := voucher.SignRegistration(thief.owner, voucher.Registration{Owner: "thief", OwnerKey: thief.owner.Public(), DomainCA: a.root, CreatedOn: now})
	ldevid := a.issue(t, "device", false, x509.ExtKeyUsageClientAuth)
	altered := a.registration(t, now)
	altered[len(altered)-1] ^= 1
	tests := []struct {
		name   string
		cert   *tls.Certificate
		body   []byte
		code   int
		reason Reason
	}{
		{"ok/first", &a.registrar, a.registration(t, now), 200, ""},
		{"ok/again", &a.registrar, a.registration(t, now.Add(time.Second)), 200, ""},
		{"fail/older-than-kept", &a.registrar, a.registration(t, now.Add(-time.Hour)), 409, ReasonStaleRegistration},
		{"fail/another-owners-ca-over-its-registrar", &a.registrar, stolen, 409, ReasonDomainTaken},
		{"fail/another-owners-ca", &thief.registrar, stolen, 403, ReasonUnauthenticatedRegistrar},
		{"fail/no-client-certificate", nil, b.registration(t, now), 403, ReasonUnauthenticatedRegistrar},
		{"fail/not-a-registrar", &ldevid, a.registration(t, now.Add(2*time.Second)), 403, ReasonUnauthenticatedRegistrar},
		{"fail/altered", &a.registrar, altered, 400, ReasonBadSignature},
		{"fail/garbage", &a.registrar, []byte{1, 2, 3}, 400, ReasonBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before, _ := os.ReadFile(filepath.Join(tm.dir, RegistrationsFile))
			code, body, reason, _ := tm.post(t, tm.client(tt.cert, nil), voucher.PathMASARegister, voucher.MediaTypeRegistration, tt.body)
			if code != tt.code || Reason(reason) != tt.reason {
				t.Fatalf("answer %d %q (%s), want %d %q", code, reason, body, tt.code, tt.reason)
			}
			if tt.code != 200 {
				if after, _ := os.ReadFile(filepath.Join(tm.dir, RegistrationsFile)); string(after) != string(before) {
					t.Fatal("a refused registration changed the registrations")
				}
				return
			}
			var res RegistrationResult
			if err := json.Unmarshal(body, &res); err != nil || res.Devices != 3 || res.OwnerKey != a.owner.Public().KeyID() {
				t.Fatalf("result %s", body)
			}
		})
	}
	// Registrations survive a restart.
	m2, err := New(Options{FactoryDir: tm.dir, LogPath: filepath.Join(t.TempDir(), "log")})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if st := m2.Stats(); st.Registrations != 1 {
		t.Fatalf("after restart: %+v", st)
	}
}

// TestTLSPolicy: Go clients limited to X25519 or to TLS 1.2 are refused;
// the default client negotiates X25519MLKEM768 and the MASA reports it.
func TestTLSPolicy(t *testing.T) {
	tm := newTestMASA(t)
	tests := []struct {
		name string
		edit func(*tls.Config)
		ok   bool
	}{
		{"ok/default-hybrid", nil, true},
		{"fail/x25519-only", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.X25519}; c.VerifyConnection = nil }, false},
		{"fail/p256-only", func(c *tls.Config) { c.CurvePreferences = []tls.CurveID{tls.CurveP256}; c.VerifyConnection = nil }, false},
		{"fail/tls12", func(c *tls.Config) {
			c.MinVersion, c.MaxVersion, c.VerifyConnection = tls.VersionTLS12, tls.VersionTLS12, nil
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tm.client(&tm.a.registrar, tt.edit).Get(tm.url + "/.well-known/brski/status")
			if !tt.ok {
				if err == nil {
					resp.Body.Close()
					t.Fatal("a classical client was served")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var st struct {
				TLS string `json:"tls"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&st)
			if resp.StatusCode != http.StatusOK || st.TLS != "TLS1.3 X25519MLKEM768" || resp.Header.Get(HeaderTLSGroup) != "X25519MLKEM768" ||
				resp.TLS.CurveID != tls.X25519MLKEM768 {
				t.Fatalf("status %d %+v header %q client %v", resp.StatusCode, st, resp.Header.Get(HeaderTLSGroup), resp.TLS.CurveID)
			}
		})
	}
}
