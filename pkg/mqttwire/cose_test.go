package mqttwire

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func testNonce(tag byte) []byte {
	n := make([]byte, NonceSize)
	for i := range n {
		n[i] = tag ^ byte(i*7+3)
	}
	return n
}

func enrollRequest(p *testPKI) Request {
	return Request{
		Op:     OpEnroll,
		Device: testDevice,
		Nonce:  testNonce(0xa5),
		CSR:    p.csr,
		Claims: &Claims{FirmwareVersion: "1.4.2", FirmwareSHA256: strings.Repeat("ab", 32)},
	}
}

func okResponse() Response {
	return Response{
		Op:          OpEnroll,
		Device:      testDevice,
		Correlation: []byte("corr-0001"),
		Nonce:       testNonce(0x5a),
		Seq:         42,
		Status:      StatusOK,
		Certificate: []byte{0x30, 0x03, 0x02, 0x01, 0x01},
		Chain:       [][]byte{{0x30, 0x00}, {0x30, 0x01, 0x00}},
		Zone:        "plant-a",
		State:       "active",
	}
}

func okCommand() Command {
	return Command{Device: testDevice, Generation: 7, Seq: 43, Rotate: true, Zone: "plant-a", Campaign: "q3"}
}

func TestRequestRoundTrip(t *testing.T) {
	p := getPKI(t)
	tests := []struct {
		name string
		by   issued
		req  Request
	}{
		{name: "ok/enroll P-256 with a 2-certificate chain", by: p.device, req: enrollRequest(p)},
		{name: "ok/renew", by: p.ldevid, req: Request{Op: OpRenew, Device: testDevice, Nonce: []byte{1}, CSR: p.csr}},
		{name: "ok/state", by: p.ldevid, req: Request{Op: OpState, Device: testDevice, Nonce: testNonce(1), Applied: 9}},
		{name: "ok/enroll Ed25519", by: p.deviceEd, req: enrollRequest(p)},
		{name: "ok/state P-384", by: p.responderP384, req: Request{Op: OpState, Device: testDevice, Nonce: testNonce(2)}},
		{name: "ok/nonce of the largest size", by: p.device,
			req: Request{Op: OpState, Device: testDevice, Nonce: bytes.Repeat([]byte{9}, 2*NonceSize)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.by.signer(t).SignRequest(tt.req)
			if err != nil {
				t.Fatalf("SignRequest: %v", err)
			}
			got, err := OpenRequest(b)
			if err != nil {
				t.Fatalf("OpenRequest: %v", err)
			}
			if !reflect.DeepEqual(got.Request, tt.req) {
				t.Fatalf("OpenRequest = %+v, want %+v", got.Request, tt.req)
			}
			if len(got.Chain) != len(tt.by.chain) {
				t.Fatalf("chain of %d certificates, want %d", len(got.Chain), len(tt.by.chain))
			}
			for i := range got.Chain {
				if !got.Chain[i].Equal(tt.by.chain[i]) {
					t.Fatalf("chain[%d] = %s, want %s", i, got.Chain[i].Subject, tt.by.chain[i].Subject)
				}
			}
		})
	}
}

func TestVerifierRoundTrip(t *testing.T) {
	p := getPKI(t)
	for _, tt := range []struct {
		name string
		by   issued
	}{
		{name: "ok/P-256 responder under intermediate", by: p.responder},
		{name: "ok/P-384 responder", by: p.responderP384},
		{name: "ok/Ed25519 responder", by: p.responderEd},
		{name: "ok/responder issued by the root, single-certificate x5chain", by: p.responderDirect},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.by.signer(t)
			v := p.verifier()
			rb, err := s.SignResponse(okResponse())
			if err != nil {
				t.Fatalf("SignResponse: %v", err)
			}
			r, err := v.Response(rb)
			if err != nil {
				t.Fatalf("Response: %v", err)
			}
			if want := okResponse(); !reflect.DeepEqual(r, want) {
				t.Fatalf("Response = %+v, want %+v", r, want)
			}
			cb, err := s.SignCommand(okCommand())
			if err != nil {
				t.Fatalf("SignCommand: %v", err)
			}
			c, err := v.Command(cb)
			if err != nil {
				t.Fatalf("Command: %v", err)
			}
			if want := okCommand(); c != want {
				t.Fatalf("Command = %+v, want %+v", c, want)
			}
		})
	}
}

// dupKeyRequest hand-encodes a request map whose key 1 (op) appears twice:
// "renew" first, "enroll" last. With dup false it is the same map without
// the second key 1, so that the test shows the duplicate alone is refused.
func dupKeyRequest(t *testing.T, p *testPKI, dup bool) []byte {
	var b bytes.Buffer
	pairs := byte(4)
	if dup {
		pairs = 5
	}
	b.WriteByte(0xa0 | pairs)
	for _, kv := range [][2]any{{1, "renew"}, {2, testDevice}, {3, testNonce(3)}, {4, p.csr}} {
		b.Write(mustCBOR(t, kv[0]))
		b.Write(mustCBOR(t, kv[1]))
	}
	if dup {
		b.Write(mustCBOR(t, 1))
		b.Write(mustCBOR(t, "enroll"))
	}
	return b.Bytes()
}

// signedPayload signs an arbitrary payload as the given kind with the
// issued identity, ES256.
func signedPayload(t *testing.T, by issued, ctype string, payload []byte) []byte {
	return rawSign1{
		protected: header(algES256, ctype, by.ders()),
		payload:   payload,
		alg:       algES256,
		key:       by.key,
	}.bytes(t)
}

// tamper flips one bit of the first occurrence of part in b.
func tamper(t *testing.T, b, part []byte) []byte {
	i := bytes.Index(b, part)
	if i < 0 {
		t.Fatalf("tamper: %x not found", part)
	}
	out := bytes.Clone(b)
	out[i+len(part)/2] ^= 0x01
	return out
}

func TestOpenRequestRefuses(t *testing.T) {
	p := getPKI(t)
	dev := p.device
	devSigner := dev.signer(t)
	sign := func(r Request) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			b, err := devSigner.SignRequest(r)
			if err != nil {
				t.Fatalf("SignRequest: %v", err)
			}
			return b
		}
	}
	withReq := func(f func(*Request)) func(t *testing.T) []byte {
		r := enrollRequest(p)
		f(&r)
		return sign(r)
	}
	reqPayload := func(t *testing.T) []byte { return mustCBOR(t, enrollRequest(p)) }
	five := append(dev.ders(), p.responder.ders()[0], p.ldevid.ders()[0], p.mfgRoot.Raw)

	tests := []struct {
		name  string
		input func(t *testing.T) []byte
		err   error
	}{
		{name: "fail/tampered payload byte", err: ErrBadSignature, input: func(t *testing.T) []byte {
			return tamper(t, sign(enrollRequest(p))(t), testNonce(0xa5))
		}},
		{name: "fail/tampered signature byte", err: ErrBadSignature, input: func(t *testing.T) []byte {
			b := sign(enrollRequest(p))(t)
			b[len(b)-1] ^= 0x80
			return b
		}},
		{name: "fail/signed by another key than the x5chain leaf", err: ErrBadSignature, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, dev.ders()), payload: reqPayload(t),
				alg: algES256, key: p.stranger}.bytes(t)
		}},
		{name: "fail/alg ES384 with a P-256 key", err: ErrBadSignature, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES384, TypeRequest, dev.ders()), payload: reqPayload(t),
				alg: algES384, key: dev.key}.bytes(t)
		}},
		{name: "fail/alg EdDSA with a P-256 leaf", err: ErrBadSignature, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algEdDSA, TypeRequest, dev.ders()), payload: reqPayload(t),
				alg: algEdDSA, key: p.deviceEd.key}.bytes(t)
		}},
		{name: "fail/response content type", err: ErrMalformed, input: func(t *testing.T) []byte {
			b, err := p.responder.signer(t).SignResponse(okResponse())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{name: "fail/no content type", err: ErrMalformed, input: func(t *testing.T) []byte {
			h := header(algES256, TypeRequest, dev.ders())
			delete(h, labelContentType)
			return rawSign1{protected: h, payload: reqPayload(t), alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/numeric content type", err: ErrMalformed, input: func(t *testing.T) []byte {
			h := header(algES256, TypeRequest, dev.ders())
			h[labelContentType] = 60
			return rawSign1{protected: h, payload: reqPayload(t), alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/content type only in the unprotected header", err: ErrMalformed, input: func(t *testing.T) []byte {
			h := header(algES256, TypeRequest, dev.ders())
			delete(h, labelContentType)
			return rawSign1{protected: h, unprotected: map[int]any{labelContentType: TypeRequest},
				payload: reqPayload(t), alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/untagged COSE_Sign1", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, dev.ders()), payload: reqPayload(t),
				alg: algES256, key: dev.key, untagged: true}.bytes(t)
		}},
		{name: "fail/COSE_Mac0 tag", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, dev.ders()), payload: reqPayload(t),
				alg: algES256, key: dev.key, tag: 17}.bytes(t)
		}},
		{name: "fail/trailing bytes", err: ErrMalformed, input: func(t *testing.T) []byte {
			return append(sign(enrollRequest(p))(t), 0x00)
		}},
		{name: "fail/truncated", err: ErrMalformed, input: func(t *testing.T) []byte {
			b := sign(enrollRequest(p))(t)
			return b[:len(b)-10]
		}},
		{name: "fail/non-CBOR garbage", err: ErrMalformed, input: func(*testing.T) []byte {
			return []byte("GET /enroll HTTP/1.1\r\n\r\n")
		}},
		{name: "fail/empty", err: ErrMalformed, input: func(*testing.T) []byte { return nil }},
		{name: "fail/oversized", err: ErrTooLarge, input: func(t *testing.T) []byte {
			return append(sign(enrollRequest(p))(t), make([]byte, MaxMessage)...)
		}},
		{name: "fail/request without nonce", err: ErrMalformed, input: withReq(func(r *Request) { r.Nonce = nil })},
		{name: "fail/nonce too long", err: ErrMalformed,
			input: withReq(func(r *Request) { r.Nonce = make([]byte, 2*NonceSize+1) })},
		{name: "fail/enroll without CSR", err: ErrMalformed, input: withReq(func(r *Request) { r.CSR = nil })},
		{name: "fail/renew without CSR", err: ErrMalformed,
			input: withReq(func(r *Request) { r.Op, r.CSR = OpRenew, nil })},
		{name: "fail/CSR too large", err: ErrTooLarge, input: withReq(func(r *Request) { r.CSR = make([]byte, MaxCSR+1) })},
		{name: "fail/unknown op", err: ErrMalformed, input: withReq(func(r *Request) { r.Op = "reboot" })},
		{name: "fail/op nonce", err: ErrMalformed, input: withReq(func(r *Request) { r.Op = OpNonce })},
		{name: "fail/no device", err: ErrMalformed, input: withReq(func(r *Request) { r.Device = "" })},
		{name: "fail/device with a topic level", err: ErrMalformed,
			input: withReq(func(r *Request) { r.Device = testDevice + "/resp" })},
		{name: "fail/device with a wildcard", err: ErrMalformed, input: withReq(func(r *Request) { r.Device = "+" })},
		{name: "fail/x5chain missing", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, nil), payload: reqPayload(t),
				alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/x5chain only in the unprotected header", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, nil),
				unprotected: map[int]any{labelX5Chain: dev.ders()},
				payload:     reqPayload(t), alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/x5chain of 5 certificates", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, five), payload: reqPayload(t),
				alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/x5chain empty array", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, [][]byte{}), payload: reqPayload(t),
				alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/x5chain holding text", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, []any{dev.ders()[0], "x"}), payload: reqPayload(t),
				alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/x5chain not DER", err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeRequest, []byte{0x30, 0x03, 1, 2, 3}), payload: reqPayload(t),
				alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/duplicate map keys in the payload", err: ErrMalformed, input: func(t *testing.T) []byte {
			return signedPayload(t, dev, TypeRequest, dupKeyRequest(t, p, true))
		}},
		{name: "fail/duplicate labels in the protected header", err: ErrMalformed, input: func(t *testing.T) []byte {
			var h bytes.Buffer
			h.WriteByte(0xa4)
			for _, kv := range [][2]any{{labelAlg, algES256}, {labelContentType, TypeRequest},
				{labelX5Chain, dev.ders()}, {labelContentType, TypeRequest}} {
				h.Write(mustCBOR(t, kv[0]))
				h.Write(mustCBOR(t, kv[1]))
			}
			return rawSign1{protectedRaw: h.Bytes(), payload: reqPayload(t), alg: algES256, key: dev.key}.bytes(t)
		}},
		{name: "fail/payload is an array", err: ErrMalformed, input: func(t *testing.T) []byte {
			return signedPayload(t, dev, TypeRequest, mustCBOR(t, []any{"enroll", testDevice}))
		}},
		{name: "fail/payload with trailing bytes", err: ErrMalformed, input: func(t *testing.T) []byte {
			return signedPayload(t, dev, TypeRequest, append(reqPayload(t), 0xf6))
		}},
		{name: "fail/payload with a wrongly typed field", err: ErrMalformed, input: func(t *testing.T) []byte {
			return signedPayload(t, dev, TypeRequest, mustCBOR(t, map[int]any{1: "state", 2: testDevice, 3: "nonce"}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.input(t)
			keep := bytes.Clone(in)
			got, err := OpenRequest(in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("OpenRequest error = %v, want %v", err, tt.err)
			}
			if got != nil {
				t.Fatalf("OpenRequest returned %+v with an error", got)
			}
			if !IsRefusal(err) {
				t.Fatalf("IsRefusal(%v) = false", err)
			}
			if !bytes.Equal(in, keep) {
				t.Fatal("OpenRequest modified its input")
			}
		})
	}
}

// TestDupKeyControl shows that the hand-encoded map of the duplicate-key
// case is accepted once the duplicate is gone.
func TestDupKeyControl(t *testing.T) {
	p := getPKI(t)
	got, err := OpenRequest(signedPayload(t, p.device, TypeRequest, dupKeyRequest(t, p, false)))
	if err != nil {
		t.Fatalf("OpenRequest: %v", err)
	}
	if got.Op != OpRenew || got.Device != testDevice || !bytes.Equal(got.CSR, p.csr) {
		t.Fatalf("OpenRequest = %+v", got.Request)
	}
}

// selfSignedResponder makes a self-signed certificate carrying ResponderURI.
func selfSignedResponder(t *testing.T) issued {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c, err := makeCert(certSpec{cn: "Embark responder", uris: []string{ResponderURI}}, key.Public(), nil, key)
	if err != nil {
		t.Fatal(err)
	}
	return issued{key: key, chain: []*x509.Certificate{c}}
}

func TestVerifierRefuses(t *testing.T) {
	p := getPKI(t)
	resp := p.responder
	respPayload := func(t *testing.T) []byte { return mustCBOR(t, okResponse()) }
	signResp := func(by issued) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			b, err := by.signer(t).SignResponse(okResponse())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	signCmd := func(by issued, c Command) func(t *testing.T) []byte {
		return func(t *testing.T) []byte {
			b, err := by.signer(t).SignCommand(c)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
	revoke := Command{Device: testDevice, Generation: 1 << 40, Seq: 1 << 40, Revoked: true, Reason: "compromised"}
	const (
		asResponse = "response"
		asCommand  = "command"
	)
	tests := []struct {
		name  string
		as    string
		input func(t *testing.T) []byte
		now   time.Time // zero: testNow
		err   error
	}{
		{name: "fail/forged revoked command signed by a device LDevID", as: asCommand, err: ErrUntrustedSigner,
			input: signCmd(p.ldevid, revoke)},
		{name: "fail/response signed by a device LDevID", as: asResponse, err: ErrUntrustedSigner,
			input: signResp(p.ldevid)},
		{name: "fail/responder under another root", as: asResponse, err: ErrUntrustedSigner,
			input: signResp(p.otherResponder)},
		{name: "fail/command by a responder under another root", as: asCommand, err: ErrUntrustedSigner,
			input: signCmd(p.otherResponder, revoke)},
		{name: "fail/self-signed responder", as: asResponse, err: ErrUntrustedSigner,
			input: func(t *testing.T) []byte { return signResp(selfSignedResponder(t))(t) }},
		{name: "fail/expired responder", as: asResponse, err: ErrUntrustedSigner,
			input: signResp(p.shortResponder), now: p.shortResponder.chain[0].NotAfter.Add(time.Second)},
		{name: "fail/responder not yet valid", as: asCommand, err: ErrUntrustedSigner,
			input: signCmd(p.responder, okCommand()), now: p.responder.chain[0].NotBefore.Add(-time.Second)},
		{name: "fail/expired intermediate", as: asResponse, err: ErrUntrustedSigner,
			input: signResp(p.responderUnderShort), now: testNow.Add(60 * 24 * time.Hour)},
		{name: "fail/x5chain without the intermediate", as: asResponse, err: ErrUntrustedSigner,
			input: func(t *testing.T) []byte {
				return signResp(issued{key: resp.key, chain: resp.chain[:1]})(t)
			}},
		{name: "fail/response opened as a command", as: asCommand, err: ErrMalformed, input: signResp(resp)},
		{name: "fail/command opened as a response", as: asResponse, err: ErrMalformed,
			input: signCmd(resp, okCommand())},
		{name: "fail/request opened as a response", as: asResponse, err: ErrMalformed, input: func(t *testing.T) []byte {
			b, err := resp.signer(t).SignRequest(enrollRequest(p))
			if err != nil {
				t.Fatal(err)
			}
			return b
		}},
		{name: "fail/tampered response", as: asResponse, err: ErrBadSignature, input: func(t *testing.T) []byte {
			return tamper(t, signResp(resp)(t), testNonce(0x5a))
		}},
		{name: "fail/command signed by another key than the leaf", as: asCommand, err: ErrBadSignature,
			input: func(t *testing.T) []byte {
				return rawSign1{protected: header(algES256, TypeCommand, resp.ders()), payload: mustCBOR(t, revoke),
					alg: algES256, key: p.stranger}.bytes(t)
			}},
		{name: "fail/alg ES384 with a P-256 responder", as: asResponse, err: ErrBadSignature,
			input: func(t *testing.T) []byte {
				return rawSign1{protected: header(algES384, TypeResponse, resp.ders()), payload: respPayload(t),
					alg: algES384, key: resp.key}.bytes(t)
			}},
		{name: "fail/duplicate map keys in a command", as: asCommand, err: ErrMalformed,
			input: func(t *testing.T) []byte {
				// {1: device, 6: false, 2: 5, 6: true}: the last "revoked" must not win.
				payload := append([]byte{0xa4}, mustCBOR(t, 1)...)
				for _, v := range []any{testDevice, 6, false, 2, 5, 6, true} {
					payload = append(payload, mustCBOR(t, v)...)
				}
				return signedPayload(t, resp, TypeCommand, payload)
			}},
		{name: "fail/untagged response", as: asResponse, err: ErrMalformed, input: func(t *testing.T) []byte {
			return rawSign1{protected: header(algES256, TypeResponse, resp.ders()), payload: respPayload(t),
				alg: algES256, key: resp.key, untagged: true}.bytes(t)
		}},
		{name: "fail/garbage", as: asCommand, err: ErrMalformed,
			input: func(*testing.T) []byte { return []byte{0xd2, 0x84, 0xff} }},
		{name: "fail/empty", as: asResponse, err: ErrMalformed, input: func(*testing.T) []byte { return []byte{} }},
		{name: "fail/oversized", as: asCommand, err: ErrTooLarge,
			input: func(*testing.T) []byte { return make([]byte, MaxMessage+1) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = testNow
			}
			v := NewVerifier(p.roots(), fixedClock(now))
			in := tt.input(t)
			var got any
			var err error
			switch tt.as {
			case asResponse:
				var r Response
				r, err = v.Response(in)
				if !reflect.DeepEqual(r, Response{}) {
					got = r
				}
			case asCommand:
				var c Command
				c, err = v.Command(in)
				if c != (Command{}) {
					got = c
				}
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("%s: error = %v, want %v", tt.as, err, tt.err)
			}
			if got != nil {
				t.Fatalf("%s: returned %+v with an error", tt.as, got)
			}
			if n := len(v.verified); n != 0 {
				t.Fatalf("a refused message left %d verified chains behind", n)
			}
		})
	}
}

// adjustableClock is a test clock the test moves by hand.
type adjustableClock struct{ t time.Time }

func (c *adjustableClock) now() time.Time { return c.t }

// TestVerifierCache checks that the chains a Verifier remembers stop
// counting once any certificate of the chain has expired.
func TestVerifierCache(t *testing.T) {
	p := getPKI(t)
	tests := []struct {
		name  string
		by    issued
		later time.Time
		err   error
	}{
		{name: "ok/still valid later", by: p.responder, later: testNow.Add(24 * time.Hour)},
		{name: "fail/leaf expired since", by: p.shortResponder, later: testNow.Add(2 * time.Hour), err: ErrUntrustedSigner},
		{name: "fail/intermediate expired since", by: p.responderUnderShort, later: testNow.Add(60 * 24 * time.Hour),
			err: ErrUntrustedSigner},
		{name: "fail/clock moved before the leaf's validity", by: p.responder,
			later: p.responder.chain[0].NotBefore.Add(-time.Minute), err: ErrUntrustedSigner},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &adjustableClock{t: testNow}
			v := NewVerifier(p.roots(), clock.now)
			s := tt.by.signer(t)
			b, err := s.SignCommand(okCommand())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := v.Command(b); err != nil {
				t.Fatalf("first Command: %v", err)
			}
			if _, err := v.Command(b); err != nil {
				t.Fatalf("second Command at the same time: %v", err)
			}
			clock.t = tt.later
			c, err := v.Command(b)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Command at %v: error = %v, want %v", tt.later, err, tt.err)
			}
			if tt.err != nil && c != (Command{}) {
				t.Fatalf("Command returned %+v with an error", c)
			}
		})
	}
}

// TestVerifierConcurrent exercises the Verifier's cache from many
// goroutines (meant for -race).
func TestVerifierConcurrent(t *testing.T) {
	p := getPKI(t)
	v := p.verifier()
	good, err := p.responder.signer(t).SignResponse(okResponse())
	if err != nil {
		t.Fatal(err)
	}
	bad, err := p.ldevid.signer(t).SignResponse(okResponse())
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 16)
	for i := range 16 {
		go func() {
			for range 20 {
				if i%2 == 0 {
					if _, err := v.Response(good); err != nil {
						errs <- fmt.Errorf("good: %w", err)
						return
					}
				} else if _, err := v.Response(bad); !errors.Is(err, ErrUntrustedSigner) {
					errs <- fmt.Errorf("bad: error = %v, want %v", err, ErrUntrustedSigner)
					return
				}
			}
			errs <- nil
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestNewSigner(t *testing.T) {
	p := getPKI(t)
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	c521, err := makeCert(certSpec{cn: "P-521"}, p521.Public(), nil, p521)
	if err != nil {
		t.Fatal(err)
	}
	four := append(slices.Clone(p.device.chain), p.mfgRoot, p.root)
	tests := []struct {
		name  string
		key   crypto.Signer
		chain []*x509.Certificate
		err   error // nil for the failures NewSigner reports without a sentinel
	}{
		{name: "ok/chain of 1", key: p.responderDirect.key, chain: p.responderDirect.chain},
		{name: "ok/chain of 4", key: p.device.key, chain: four},
		{name: "fail/no chain", key: p.device.key},
		{name: "fail/chain of 5", key: p.device.key, chain: append(slices.Clone(four), p.otherRoot)},
		{name: "fail/key does not match the leaf", key: p.stranger, chain: p.device.chain},
		{name: "fail/Ed25519 key with a P-256 leaf", key: p.deviceEd.key, chain: p.device.chain},
		{name: "fail/P-521", key: p521, chain: []*x509.Certificate{c521}, err: ErrUnsupportedKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.key, tt.chain)
			if strings.HasPrefix(tt.name, "ok/") {
				if err != nil {
					t.Fatalf("NewSigner: %v", err)
				}
				b, err := s.SignRequest(Request{Op: OpState, Device: testDevice, Nonce: []byte{1}})
				if err != nil {
					t.Fatalf("SignRequest: %v", err)
				}
				got, err := OpenRequest(b)
				if err != nil {
					t.Fatalf("OpenRequest: %v", err)
				}
				if len(got.Chain) != len(tt.chain) {
					t.Fatalf("x5chain of %d certificates, want %d", len(got.Chain), len(tt.chain))
				}
				return
			}
			if err == nil || s != nil {
				t.Fatalf("NewSigner = %v, %v; want an error", s, err)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("NewSigner error = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestSignTooLarge(t *testing.T) {
	p := getPKI(t)
	s := p.responder.signer(t)
	r := okResponse()
	r.Message = strings.Repeat("m", MaxMessage)
	b, err := s.SignResponse(r)
	if !errors.Is(err, ErrTooLarge) || b != nil {
		t.Fatalf("SignResponse of a %d-byte message = %d bytes, %v; want %v", len(r.Message), len(b), err, ErrTooLarge)
	}
}

func TestIsRefusal(t *testing.T) {
	for _, err := range []error{ErrMalformed, ErrTooLarge, ErrBadSignature, ErrUntrustedSigner, ErrTopic, ErrUnsupportedKey} {
		if !IsRefusal(fmt.Errorf("op: %w", err)) {
			t.Errorf("IsRefusal(wrapped %v) = false", err)
		}
	}
	for _, err := range []error{nil, errors.New("disk full"), fmt.Errorf("op: %w", errors.ErrUnsupported)} {
		if IsRefusal(err) {
			t.Errorf("IsRefusal(%v) = true", err)
		}
	}
}
