package voucher

import (
	"crypto/x509"
	"errors"
	"testing"
	"time"

	"github.com/veraison/go-cose"
)

func TestPledgeRequest(t *testing.T) {
	p := newTestPKI(t)
	good := p.pledgeRequest(t)
	sr, err := OpenPledgeRequest(good)
	if err != nil {
		t.Fatal(err)
	}
	if sr.SerialNumber != "ACME-000001" || !sr.Chain[0].Equal(p.device) || string(sr.Nonce) != string(p.nonce()) {
		t.Fatalf("opened %+v", sr.PledgeRequest)
	}
	// Another device's IDevID signing for ACME-000001.
	other := newTestPKI(t)
	dev2 := leafTmpl("ACME-000002", p.now, x509.ExtKeyUsageClientAuth)
	dev2.Subject.SerialNumber = "ACME-000002"
	c2, k2 := mkCert(t, dev2, other.idevidCA, other.idevidCAKey)
	s2, err := NewRequestSigner(k2, []*x509.Certificate{c2})
	if err != nil {
		t.Fatal(err)
	}
	notMine, err := s2.SignPledgeRequest(PledgeRequest{SerialNumber: "ACME-000001", Nonce: p.nonce(), ProximityRegistrar: SPKIHash(p.server)})
	if err != nil {
		t.Fatal(err)
	}
	altered := alter(t, good, func(m *cose.Sign1Message) { m.Payload[len(m.Payload)-1] ^= 1 })
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"fail/serial-of-another-idevid", notMine, ErrMalformed},
		{"fail/altered", altered, ErrBadSignature},
		{"fail/truncated", good[:40], ErrMalformed},
		{"fail/too-large", make([]byte, MaxRequest+1), ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := OpenPledgeRequest(tt.b); !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("OpenPledgeRequest = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	ds, _ := NewRequestSigner(p.deviceKey, []*x509.Certificate{p.device})
	for name, r := range map[string]PledgeRequest{
		"fail/short-nonce":     {SerialNumber: "ACME-000001", Nonce: []byte("1234"), ProximityRegistrar: SPKIHash(p.server)},
		"fail/no-serial":       {Nonce: p.nonce(), ProximityRegistrar: SPKIHash(p.server)},
		"fail/huge-nonce":      {SerialNumber: "ACME-000001", Nonce: make([]byte, MaxNonce+1), ProximityRegistrar: SPKIHash(p.server)},
		"fail/short-proximity": {SerialNumber: "ACME-000001", Nonce: p.nonce(), ProximityRegistrar: []byte{1}},
	} {
		if b, err := ds.SignPledgeRequest(r); !errors.Is(err, ErrMalformed) || b != nil {
			t.Errorf("%s: sign = %v", name, err)
		}
	}
}

func TestRegistrarRequest(t *testing.T) {
	p := newTestPKI(t)
	other := newTestPKI(t)
	rs := p.registrarSigner(t)
	pledge := p.pledgeRequest(t)
	proximity := [][]byte{p.server.Raw, p.domainInter.Raw}
	sign := func(r RegistrarRequest) []byte {
		t.Helper()
		b, err := rs.SignRegistrarRequest(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nonced := RegistrarRequest{SerialNumber: "ACME-000001", Nonce: p.nonce(), PledgeRequest: pledge, ProximityChain: proximity, CreatedOn: p.now}
	sr, err := OpenRegistrarRequest(sign(nonced))
	if err != nil {
		t.Fatal(err)
	}
	if sr.Pledge == nil || !sr.Chain[0].Equal(p.registrar) || !sr.Proximity[0].Equal(p.server) || !IsRegistrar(sr.Chain[0]) {
		t.Fatalf("opened %+v", sr)
	}
	// A device that asked over plain CoAP saw no server key: the
	// proximity chain is the registrar's own, and nothing ties it to the
	// request but the registrar's signature.
	ds, _ := NewRequestSigner(p.deviceKey, []*x509.Certificate{p.device})
	plain, err := ds.SignPledgeRequest(PledgeRequest{SerialNumber: "ACME-000001", Nonce: p.nonce()})
	if err != nil {
		t.Fatal(err)
	}
	if op, err := OpenPledgeRequest(plain); err != nil || op.ProximityRegistrar != nil {
		t.Fatalf("plain pledge request: %v", err)
	}
	pr, err := OpenRegistrarRequest(sign(RegistrarRequest{SerialNumber: "ACME-000001", Nonce: p.nonce(), PledgeRequest: plain,
		ProximityChain: [][]byte{other.server.Raw}, CreatedOn: p.now}))
	if err != nil || !pr.Proximity[0].Equal(other.server) || pr.Pledge.ProximityRegistrar != nil {
		t.Fatalf("registrar request around a plain pledge request: %v", err)
	}
	nl, err := OpenRegistrarRequest(sign(RegistrarRequest{SerialNumber: "ACME-000001", CreatedOn: p.now, ExpiresOn: p.now.Add(time.Hour)}))
	if err != nil || nl.Pledge != nil || len(nl.Nonce) != 0 {
		t.Fatalf("nonceless: %v %+v", err, nl)
	}

	with := func(edit func(r *RegistrarRequest)) RegistrarRequest {
		r := nonced
		edit(&r)
		return r
	}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"fail/other-registrar-seen", sign(with(func(r *RegistrarRequest) { r.ProximityChain = [][]byte{other.server.Raw} })), ErrProximity},
		{"fail/nonce-differs", sign(with(func(r *RegistrarRequest) { r.Nonce = []byte("another-nonce-16") })), ErrMalformed},
		{"fail/serial-differs", sign(with(func(r *RegistrarRequest) { r.SerialNumber = "ACME-000009" })), ErrMalformed},
		{"fail/pledge-altered", sign(with(func(r *RegistrarRequest) {
			r.PledgeRequest = alter(t, pledge, func(m *cose.Sign1Message) { m.Payload[len(m.Payload)-1] ^= 1 })
		})), ErrBadSignature},
		{"fail/registrar-altered", alter(t, sign(nonced), func(m *cose.Sign1Message) { m.Payload[len(m.Payload)-1] ^= 1 }), ErrBadSignature},
		{"fail/voucher-as-request", func() []byte {
			b, _ := p.signer(t).Sign(p.voucher())
			return b
		}(), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := OpenRegistrarRequest(tt.b); !errors.Is(err, tt.want) || got != nil {
				t.Fatalf("OpenRegistrarRequest = %v; want %v", err, tt.want)
			}
		})
	}
	for name, r := range map[string]RegistrarRequest{
		"fail/nonced-with-expiry":         with(func(r *RegistrarRequest) { r.ExpiresOn = p.now.Add(time.Hour) }),
		"fail/nonced-without-proximity":   with(func(r *RegistrarRequest) { r.ProximityChain = nil }),
		"fail/nonceless-without-expiry":   {SerialNumber: "ACME-000001", CreatedOn: p.now},
		"fail/nonceless-with-nonce":       {SerialNumber: "ACME-000001", CreatedOn: p.now, ExpiresOn: p.now.Add(time.Hour), Nonce: p.nonce()},
		"fail/no-created-on":              with(func(r *RegistrarRequest) { r.CreatedOn = time.Time{} }),
		"fail/proximity-chain-too-long":   with(func(r *RegistrarRequest) { r.ProximityChain = make([][]byte, MaxChain+1) }),
		"fail/nonceless-with-a-proximity": {SerialNumber: "ACME-000001", CreatedOn: p.now, ExpiresOn: p.now.Add(time.Hour), ProximityChain: proximity},
	} {
		if b, err := rs.SignRegistrarRequest(r); !errors.Is(err, ErrMalformed) || b != nil {
			t.Errorf("%s: sign = %v", name, err)
		}
	}
}
