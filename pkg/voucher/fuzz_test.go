package voucher

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// The decoders face bytes from devices, registrars and MASAs: none may
// panic, and whatever they accept must re-encode and verify again.

func FuzzVerify(f *testing.F) {
	p := newTestPKI(f)
	s := p.signer(f)
	v, _ := s.Sign(p.voucher())
	f.Add(v)
	nl := p.voucher()
	nl.Nonce, nl.ExpiresOn = nil, p.now.Add(time.Hour)
	b, _ := s.Sign(nl)
	f.Add(b)
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
	o := VerifyOptions{Anchors: []*x509.Certificate{p.anchor}, Serial: "ACME-000001", Nonce: p.nonce(),
		Now: func() time.Time { return p.now }, AllowNonceless: true}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Verify(b, o)
		if err != nil {
			if got != nil {
				t.Fatal("a refused voucher was returned")
			}
			return
		}
		if got.SerialNumber != "ACME-000001" {
			t.Fatalf("accepted a voucher for %q", got.SerialNumber)
		}
		if _, _, err := Parse(b); err != nil {
			t.Fatalf("Verify accepted what Parse refuses: %v", err)
		}
	})
}

func FuzzOpenRequests(f *testing.F) {
	p := newTestPKI(f)
	pledge := p.pledgeRequest(f)
	f.Add(pledge)
	reg, _ := p.registrarSigner(f).SignRegistrarRequest(RegistrarRequest{SerialNumber: "ACME-000001", Nonce: p.nonce(),
		PledgeRequest: pledge, ProximityChain: [][]byte{p.server.Raw}, CreatedOn: p.now})
	f.Add(reg)
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := OpenPledgeRequest(b); err == nil {
			if r.Chain[0].Subject.SerialNumber != r.SerialNumber {
				t.Fatal("accepted a pledge request for another serial than its IDevID's")
			}
		}
		if r, err := OpenRegistrarRequest(b); err == nil && r.Pledge != nil {
			if r.Pledge.SerialNumber != r.SerialNumber || string(r.Pledge.Nonce) != string(r.Nonce) {
				t.Fatal("accepted a registrar request that disagrees with its pledge request")
			}
		}
	})
}

func FuzzOpenEnvelopes(f *testing.F) {
	p := newTestPKI(f)
	key, _ := hybridsig.GenerateKey(nil)
	reg, _ := SignRegistration(key, Registration{Owner: "op", OwnerKey: key.Public(), DomainCA: p.domainRoot, CreatedOn: p.now})
	f.Add(reg)
	v, _ := p.signer(f).Sign(p.voucher())
	cs, _ := Countersign(key, v)
	f.Add(cs)
	st, _ := MarshalStatus(Status{OK: true})
	f.Add(st)
	keys := func(id string) (*hybridsig.PublicKey, bool) { return key.Public(), id == key.Public().KeyID() }
	f.Fuzz(func(t *testing.T, b []byte) {
		if r, err := OpenRegistration(b); err == nil && (r.OwnerKey == nil || r.DomainCA == nil || !r.DomainCA.IsCA) {
			t.Fatal("accepted an incomplete registration")
		}
		if got, _, err := OpenCountersigned(b, keys); err == nil && len(got) == 0 {
			t.Fatal("accepted an empty countersigned voucher")
		}
		_, _ = ParseStatus(b)
	})
}
