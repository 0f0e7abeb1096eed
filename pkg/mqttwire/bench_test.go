package mqttwire

import "testing"

func BenchmarkOpenRequest(b *testing.B) {
	p := getPKI(b)
	msg, err := p.device.signer(b).SignRequest(enrollRequest(p))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := OpenRequest(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignResponse(b *testing.B) {
	p := getPKI(b)
	s := p.responder.signer(b)
	r := okResponse()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.SignResponse(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifierResponse measures a device opening a response from a
// responder whose chain it has verified before (the usual case).
func BenchmarkVerifierResponse(b *testing.B) {
	p := getPKI(b)
	msg, err := p.responder.signer(b).SignResponse(okResponse())
	if err != nil {
		b.Fatal(err)
	}
	v := p.verifier()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Response(msg); err != nil {
			b.Fatal(err)
		}
	}
}
