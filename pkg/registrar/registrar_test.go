package registrar

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/voucher"
)

type answerFunc func(t *testing.T, sr *voucher.SignedRegistrarRequest, body []byte) (int, []byte)

// switchable is a fake MASA whose behaviour a test case sets.
func (w *world) switchable(t *testing.T, behave *atomic.Pointer[answerFunc]) *fakeMASA {
	t.Helper()
	return w.startMASA(t, nil, func(t *testing.T, sr *voucher.SignedRegistrarRequest, body []byte) (int, []byte) {
		if sr == nil { // a registration
			reg, err := voucher.OpenRegistration(body)
			if err != nil {
				return 400, []byte(`{"reason":"bad_request","message":"x"}`)
			}
			sum := sha256.Sum256(reg.DomainCA.Raw)
			b, _ := json.Marshal(map[string]any{"owner": reg.Owner, "owner_key": reg.OwnerKey.KeyID(),
				"domain_ca_sha256": hex.EncodeToString(sum[:]), "devices": 1})
			return 200, b
		}
		return (*behave.Load())(t, sr, body)
	})
}

func (w *world) stats(t *testing.T) store.Stats {
	t.Helper()
	st, err := w.db.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Bytes = 0
	return st
}

func (w *world) lastAudit(t *testing.T) audit.Entry {
	t.Helper()
	var e audit.Entry
	_ = w.db.View(context.Background(), func(r store.Reader) error {
		var err error
		e, err = r.LastAudit()
		return err
	})
	return e
}

func TestRequestVoucher(t *testing.T) {
	w := newWorld(t)
	var behave atomic.Pointer[answerFunc]
	m := w.switchable(t, &behave)
	r := w.registrarOf(t)
	ctx := context.Background()
	if _, err := r.SetMASA(ctx, "acme", m.url, "", "test"); err != nil {
		t.Fatal(err)
	}
	otherKey, _ := hybridsig.GenerateKey(nil)
	other := newWorld(t)
	nonce := []byte("nonce-0123456789")
	genuine := func(edit func(v *voucher.Voucher)) answerFunc {
		return func(t *testing.T, sr *voucher.SignedRegistrarRequest, _ []byte) (int, []byte) {
			return 200, w.vouch(t, sr, edit, w.manifestKey)
		}
	}
	fixed := func(code int, body string) answerFunc {
		return func(*testing.T, *voucher.SignedRegistrarRequest, []byte) (int, []byte) { return code, []byte(body) }
	}
	ownChain := []*x509.Certificate{w.device}
	tests := []struct {
		name   string
		masa   answerFunc
		chain  []*x509.Certificate
		body   []byte
		reason onboard.Reason
		masaR  string // the MASA's reason, for refusals
		audit  string // the outcome audited, "" for none
	}{
		{name: "ok/voucher", masa: genuine(nil), audit: "ok"},
		{name: "ok/request naming no server (plain CoAP)", masa: func(t *testing.T, sr *voucher.SignedRegistrarRequest, b []byte) (int, []byte) {
			// The MASA gets the registrar's own server chain.
			if !sr.Proximity[0].Equal(w.server[0]) || sr.Pledge.ProximityRegistrar != nil {
				return 400, []byte(`{"reason":"bad_request","message":"proximity chain"}`)
			}
			return 200, w.vouch(t, sr, nil, w.manifestKey)
		}, body: func() []byte {
			s, _ := voucher.NewRequestSigner(w.deviceKey, ownChain)
			b, _ := s.SignPledgeRequest(voucher.PledgeRequest{SerialNumber: "ACME-000001", Nonce: nonce})
			return b
		}(), audit: "ok"},
		{name: "fail/masa-refuses", masa: fixed(403, `{"reason":"wrong_owner","message":"sold to another owner"}`),
			reason: ReasonVoucherRefused, masaR: "wrong_owner", audit: string(ReasonVoucherRefused)},
		{name: "fail/masa-fails", masa: fixed(500, `oops`), reason: ReasonMASAUnavailable},
		{name: "fail/masa-answers-garbage", masa: fixed(200, `garbage`), reason: ReasonVoucherUntrusted},
		{name: "fail/countersigned-by-another-key", masa: func(t *testing.T, sr *voucher.SignedRegistrarRequest, _ []byte) (int, []byte) {
			return 200, w.vouch(t, sr, nil, otherKey)
		}, reason: ReasonVoucherUntrusted},
		{name: "fail/voucher-pins-another-domain", masa: genuine(func(v *voucher.Voucher) { v.PinnedDomainCert = other.root.Raw }), reason: ReasonVoucherUntrusted},
		{name: "fail/voucher-for-another-nonce", masa: genuine(func(v *voucher.Voucher) { v.Nonce = []byte("another-nonce-00") }), reason: ReasonVoucherUntrusted},
		{name: "fail/voucher-for-another-serial", masa: genuine(func(v *voucher.Voucher) { v.SerialNumber = "ACME-000002" }), reason: ReasonVoucherUntrusted},
		{name: "fail/no-client-certificate", masa: genuine(nil), chain: []*x509.Certificate{}, reason: onboard.ReasonUnauthenticated},
		{name: "fail/session-of-another-device", masa: genuine(nil), chain: []*x509.Certificate{other.device}, reason: onboard.ReasonWrongDevice},
		{name: "fail/not-an-idevid-of-a-trusted-manufacturer", masa: genuine(nil), chain: []*x509.Certificate{other.device},
			body: other.pledge(t, nonce), reason: onboard.ReasonUntrustedChain},
		{name: "fail/device-saw-another-server", masa: genuine(nil),
			body: func() []byte {
				s, _ := voucher.NewRequestSigner(w.deviceKey, ownChain)
				b, _ := s.SignPledgeRequest(voucher.PledgeRequest{SerialNumber: "ACME-000001", Nonce: nonce, ProximityRegistrar: voucher.SPKIHash(other.server[0])})
				return b
			}(), reason: ReasonProximity},
		{name: "fail/garbage-request", masa: genuine(nil), body: []byte{1, 2}, reason: onboard.ReasonBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			behave.Store(&tt.masa)
			chain, body := ownChain, w.pledge(t, nonce)
			if tt.chain != nil {
				chain = tt.chain
			}
			if tt.body != nil {
				body = tt.body
			}
			before := w.stats(t)
			v, err := r.RequestVoucher(ctx, Request{Chain: chain, Body: body, Transport: "coaps", Remote: "test"})
			after := w.stats(t)
			if tt.reason == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := voucher.Verify(v, voucher.VerifyOptions{Anchors: []*x509.Certificate{w.anchor}, Serial: "ACME-000001", Nonce: nonce}); err != nil {
					t.Fatalf("the device refuses the voucher: %v", err)
				}
			} else {
				if got := onboard.ReasonOf(err); got != tt.reason || v != nil {
					t.Fatalf("err %v (reason %q), want %q", err, got, tt.reason)
				}
				var e *onboard.Error
				if errors.As(err, &e); (e.RetryAfter > 0) != (tt.reason == ReasonMASAUnavailable) {
					t.Fatalf("retry after %s for %s", e.RetryAfter, tt.reason)
				}
				var ref *MASARefusal
				if tt.masaR != "" && (!errors.As(err, &ref) || ref.Reason != tt.masaR) {
					t.Fatalf("MASA reason %v, want %q", err, tt.masaR)
				}
			}
			if tt.audit == "" {
				if after != before {
					t.Fatalf("registry changed: %+v → %+v", before, after)
				}
				return
			}
			if after.AuditEntries != before.AuditEntries+1 || after.Devices != before.Devices || after.Certificates != before.Certificates {
				t.Fatalf("registry %+v → %+v: want one audit entry", before, after)
			}
			if e := w.lastAudit(t); e.Action != "voucher" || e.Outcome != tt.audit || e.DeviceID != "urn:dev:embark:acme:ACME-000001" {
				t.Fatalf("audit %+v", e)
			}
		})
	}
}

func TestUnreachableAndOffline(t *testing.T) {
	w := newWorld(t)
	var behave atomic.Pointer[answerFunc]
	m := w.switchable(t, &behave)
	vdir := t.TempDir()
	now := time.Now()
	r := w.registrarOf(t, func(c *Config) {
		c.VoucherDir, c.RetryAfter, c.Clock = vdir, 42*time.Second, func() time.Time { return now }
	})
	ctx := context.Background()
	if _, err := r.SetMASA(ctx, "acme", m.url, "", "test"); err != nil {
		t.Fatal(err)
	}
	// Prefetch a nonceless voucher while the MASA answers.
	var asked atomic.Int64
	f := answerFunc(func(t *testing.T, sr *voucher.SignedRegistrarRequest, _ []byte) (int, []byte) {
		asked.Add(1)
		if sr == nil || sr.Pledge != nil || !sr.ExpiresOn.After(now) {
			return 400, []byte(`{"reason":"bad_request","message":"want a nonceless request"}`)
		}
		return 200, w.vouch(t, sr, nil, w.manifestKey)
	})
	behave.Store(&f)
	got, err := r.Prefetch(ctx, []string{"acme:ACME-000001", "nodevice"}, false, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Error != "" || len(got[0].Voucher) == 0 || got[1].Error == "" || asked.Load() != 1 {
		t.Fatalf("prefetch %+v", got)
	}
	// The MASA becomes unreachable.
	unreachable := answerFunc(func(*testing.T, *voucher.SignedRegistrarRequest, []byte) (int, []byte) { return 503, nil })
	behave.Store(&unreachable)
	nonce := []byte("nonce-0123456789")
	req := Request{Chain: []*x509.Certificate{w.device}, Body: w.pledge(t, nonce), Transport: "coaps"}
	before := w.stats(t)
	_, err = r.RequestVoucher(ctx, req)
	var e *onboard.Error
	if !errors.As(err, &e) || e.Reason != ReasonMASAUnavailable || e.RetryAfter != 42*time.Second {
		t.Fatalf("unreachable: %v", err)
	}
	if after := w.stats(t); after != before {
		t.Fatalf("registry changed: %+v → %+v", before, after)
	}
	path, err := VoucherPath(vdir, "acme", "ACME-000001")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, got[0].Voucher, 0o600); err != nil {
		t.Fatal(err)
	}
	v, err := r.RequestVoucher(ctx, req)
	if err != nil {
		t.Fatalf("offline voucher: %v", err)
	}
	pv, err := voucher.Verify(v, voucher.VerifyOptions{Anchors: []*x509.Certificate{w.anchor}, Serial: "ACME-000001", Nonce: nonce,
		Now: func() time.Time { return now }, AllowNonceless: true})
	if err != nil || !pv.Nonceless() {
		t.Fatalf("the device refuses the offline voucher: %v", err)
	}
	// Expired, it is no longer served.
	now = now.Add(2 * time.Hour)
	if _, err := r.RequestVoucher(ctx, req); onboard.ReasonOf(err) != ReasonMASAUnavailable {
		t.Fatalf("expired offline voucher: %v", err)
	}
}

func TestSetMASA(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	r := w.registrarOf(t)
	classical := w.startMASA(t, []tls.CurveID{tls.X25519}, func(*testing.T, *voucher.SignedRegistrarRequest, []byte) (int, []byte) {
		return 200, []byte(`{}`)
	})
	liar := w.startMASA(t, nil, func(*testing.T, *voucher.SignedRegistrarRequest, []byte) (int, []byte) {
		return 200, []byte(`{"owner_key":"someone-else","domain_ca_sha256":"00"}`)
	})
	refuses := w.startMASA(t, nil, func(*testing.T, *voucher.SignedRegistrarRequest, []byte) (int, []byte) {
		return 409, []byte(`{"reason":"domain_taken","message":"registered by another key"}`)
	})
	tests := []struct {
		name, manufacturer, url string
		want                    error
	}{
		{"fail/classical-masa", "acme", classical.url, ErrMASA},
		{"fail/masa-registers-someone-else", "acme", liar.url, ErrMASA},
		{"fail/masa-refuses", "acme", refuses.url, &MASARefusal{}},
		{"fail/not-https", "acme", "http://127.0.0.1:1", ErrConfig},
		{"fail/with-a-path", "acme", "https://127.0.0.1:1/x", ErrConfig},
		{"fail/untrusted-manufacturer", "globex", liar.url, ErrUnknownManufacturer},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := w.stats(t)
			_, err := r.SetMASA(ctx, tt.manufacturer, tt.url, "", "test")
			var ref *MASARefusal
			if _, isRef := tt.want.(*MASARefusal); isRef {
				if !errors.As(err, &ref) || ref.Reason != "domain_taken" {
					t.Fatalf("err %v", err)
				}
			} else if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
			if after := w.stats(t); after != before {
				t.Fatalf("registry changed: %+v → %+v", before, after)
			}
			if _, err := r.MASA(ctx, tt.manufacturer); !errors.Is(err, ErrNoMASA) {
				t.Fatalf("a setting was stored: %v", err)
			}
		})
	}
}

func TestRecordStatus(t *testing.T) {
	w := newWorld(t)
	r := w.registrarOf(t)
	ctx := context.Background()
	ok, _ := voucher.MarshalStatus(voucher.Status{OK: true})
	failed, _ := voucher.MarshalStatus(voucher.Status{OK: false, Reason: "wrong nonce", Context: "replay?"})
	chain := []*x509.Certificate{w.device}
	tests := []struct {
		name    string
		kind    StatusKind
		chain   []*x509.Certificate
		body    []byte
		outcome string
		reason  onboard.Reason
	}{
		{"ok/voucher-status", VoucherStatus, chain, ok, "ok", ""},
		{"ok/enroll-status-failed", EnrollStatus, chain, failed, "failed", ""},
		{"fail/no-certificate", VoucherStatus, nil, ok, "", onboard.ReasonUnauthenticated},
		{"fail/garbage", VoucherStatus, chain, []byte{0xff}, "", onboard.ReasonBadRequest},
		{"fail/unknown-kind", StatusKind("x"), chain, ok, "", onboard.ReasonBadRequest},
		{"fail/untrusted-device", EnrollStatus, []*x509.Certificate{newWorld(t).device}, ok, "", onboard.ReasonUntrustedChain},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := w.stats(t)
			err := r.RecordStatus(ctx, tt.kind, tt.chain, tt.body, "coaps")
			if onboard.ReasonOf(err) != tt.reason {
				t.Fatalf("err %v, want %q", err, tt.reason)
			}
			after := w.stats(t)
			if tt.reason != "" {
				if after != before {
					t.Fatalf("registry changed: %+v → %+v", before, after)
				}
				return
			}
			if e := w.lastAudit(t); after.AuditEntries != before.AuditEntries+1 || e.Action != string(tt.kind) || e.Outcome != tt.outcome {
				t.Fatalf("audit %+v", e)
			}
		})
	}
}

func TestCertificate(t *testing.T) {
	w := newWorld(t)
	dir := filepath.Join(t.TempDir(), "reg")
	issued := 0
	issue := func(tmpl *x509.Certificate, lifetime time.Duration) (*x509.Certificate, []*x509.Certificate, error) {
		issued++
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Minute), time.Now().Add(lifetime)
		der, err := x509.CreateCertificate(nil, tmpl, w.inter, tmpl.PublicKey, w.interKey)
		if err != nil {
			return nil, nil, err
		}
		c, err := x509.ParseCertificate(der)
		return c, []*x509.Certificate{w.inter}, err
	}
	a, err := Certificate(dir, "op", w.inter, issue, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !voucher.IsRegistrar(a.Leaf) || len(a.Certificate) != 2 {
		t.Fatalf("registrar certificate %v", a.Leaf.Subject)
	}
	b, err := Certificate(dir, "op", w.inter, issue, time.Now())
	if err != nil || !b.Leaf.Equal(a.Leaf) || issued != 1 {
		t.Fatalf("not reused: %v, issued %d", err, issued)
	}
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Certificate(dir, "op", w.inter, issue, time.Now())
	if err != nil || c.Leaf.Equal(a.Leaf) || issued != 2 {
		t.Fatalf("a key others may read was reused: %v", err)
	}
	if st, _ := os.Stat(filepath.Join(dir, KeyFile)); st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode().Perm())
	}
	d, err := Certificate(dir, "op", w.inter, issue, time.Now().Add(300*24*time.Hour))
	if err != nil || d.Leaf.Equal(c.Leaf) || issued != 3 {
		t.Fatalf("a certificate near its end was reused: %v", err)
	}
}
