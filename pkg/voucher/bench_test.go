package voucher

import (
	"crypto/x509"
	"testing"
)

func BenchmarkSign(b *testing.B) {
	p := newTestPKI(b)
	s := p.signer(b)
	v := p.voucher()
	for b.Loop() {
		if _, err := s.Sign(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	p := newTestPKI(b)
	v, _ := p.signer(b).Sign(p.voucher())
	o := VerifyOptions{Anchors: []*x509.Certificate{p.anchor}, Serial: "ACME-000001", Nonce: p.nonce()}
	b.SetBytes(int64(len(v)))
	for b.Loop() {
		if _, err := Verify(v, o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpenRegistrarRequest(b *testing.B) {
	p := newTestPKI(b)
	r, _ := p.registrarSigner(b).SignRegistrarRequest(RegistrarRequest{SerialNumber: "ACME-000001", Nonce: p.nonce(),
		PledgeRequest: p.pledgeRequest(b), ProximityChain: [][]byte{p.server.Raw, p.domainInter.Raw}, CreatedOn: p.now})
	b.SetBytes(int64(len(r)))
	for b.Loop() {
		if _, err := OpenRegistrarRequest(r); err != nil {
			b.Fatal(err)
		}
	}
}
