package mqttwire

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"fmt"
	"math/big"
	"net/url"
	"slices"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// checkSign1 verifies, without go-cose, that b is a tagged COSE_Sign1 whose
// signature verifies with leaf's key and whose protected header names ctype.
// It returns the payload.
func checkSign1(b []byte, ctype string, leaf *x509.Certificate) ([]byte, error) {
	var tag cbor.RawTag
	if err := cbor.Unmarshal(b, &tag); err != nil {
		return nil, fmt.Errorf("not a tag: %v", err)
	}
	if tag.Number != 18 {
		return nil, fmt.Errorf("tag %d, want 18", tag.Number)
	}
	var parts []cbor.RawMessage
	if err := cbor.Unmarshal(tag.Content, &parts); err != nil || len(parts) != 4 {
		return nil, fmt.Errorf("not an array of 4: %v", err)
	}
	var protected, payload, sig []byte
	for i, dst := range map[int]*[]byte{0: &protected, 2: &payload, 3: &sig} {
		if err := cbor.Unmarshal(parts[i], dst); err != nil {
			return nil, fmt.Errorf("element %d: %v", i, err)
		}
	}
	var hdr map[int]any
	if err := cbor.Unmarshal(protected, &hdr); err != nil {
		return nil, fmt.Errorf("protected header: %v", err)
	}
	if got, _ := hdr[labelContentType].(string); got != ctype {
		return nil, fmt.Errorf("content type %q, want %q", got, ctype)
	}
	alg, _ := hdr[labelAlg].(int64)
	tbs, err := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	if err != nil {
		return nil, err
	}
	var ok bool
	switch k := leaf.PublicKey.(type) {
	case *ecdsa.PublicKey:
		var digest []byte
		switch alg {
		case algES256:
			d := sha256.Sum256(tbs)
			digest = d[:]
		case algES384:
			d := sha512.Sum384(tbs)
			digest = d[:]
		default:
			return nil, fmt.Errorf("alg %d with an ECDSA key", alg)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return nil, fmt.Errorf("signature of %d bytes", len(sig))
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		ok = ecdsa.Verify(k, digest, r, s)
	case ed25519.PublicKey:
		ok = alg == algEdDSA && ed25519.Verify(k, tbs, sig)
	default:
		return nil, fmt.Errorf("key %T", leaf.PublicKey)
	}
	if !ok {
		return nil, fmt.Errorf("signature does not verify with the leaf's key")
	}
	return payload, nil
}

func FuzzOpenRequest(f *testing.F) {
	p := getPKI(f)
	valid, err := p.device.signer(f).SignRequest(enrollRequest(p))
	if err != nil {
		f.Fatal(err)
	}
	state, err := p.deviceEd.signer(f).SignRequest(Request{Op: OpState, Device: testDevice, Nonce: []byte{7}, Applied: 3})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(state)
	f.Add(valid[:len(valid)/2])
	f.Add(valid[:len(valid)-1])
	f.Add([]byte{})
	f.Add([]byte("\xd2\x84garbage"))
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0xf6, 0x40})

	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := OpenRequest(b)
		if err != nil {
			if got != nil {
				t.Fatalf("OpenRequest returned %+v with error %v", got, err)
			}
			if !IsRefusal(err) {
				t.Fatalf("OpenRequest error %v is not a refusal", err)
			}
			return
		}
		switch {
		case !validID(got.Device):
			t.Fatalf("accepted a request for device %q", got.Device)
		case len(got.Nonce) == 0 || len(got.Nonce) > 2*NonceSize:
			t.Fatalf("accepted a nonce of %d bytes", len(got.Nonce))
		case len(got.CSR) > MaxCSR:
			t.Fatalf("accepted a CSR of %d bytes", len(got.CSR))
		case !slices.Contains([]Op{OpEnroll, OpRenew, OpState}, got.Op):
			t.Fatalf("accepted op %q", got.Op)
		case got.Op != OpState && len(got.CSR) == 0:
			t.Fatalf("accepted %s without a CSR", got.Op)
		case len(got.Chain) == 0 || len(got.Chain) > MaxChain:
			t.Fatalf("accepted an x5chain of %d certificates", len(got.Chain))
		}
		payload, err := checkSign1(b, TypeRequest, got.Chain[0])
		if err != nil {
			t.Fatalf("accepted a request that does not check: %v", err)
		}
		var again Request
		if err := cbor.Unmarshal(payload, &again); err != nil {
			t.Fatalf("accepted payload does not decode: %v", err)
		}
		if again.Op != got.Op || again.Device != got.Device || string(again.Nonce) != string(got.Nonce) ||
			string(again.CSR) != string(got.CSR) || again.Applied != got.Applied {
			t.Fatalf("payload decodes to %+v, OpenRequest gave %+v", again, got.Request)
		}
	})
}

func FuzzVerifierCommand(f *testing.F) {
	p := getPKI(f)
	cmd, err := p.responder.signer(f).SignCommand(okCommand())
	if err != nil {
		f.Fatal(err)
	}
	revoke := Command{Device: testDevice, Generation: 2, Seq: 2, Revoked: true}
	cmdEd, err := p.responderEd.signer(f).SignCommand(revoke)
	if err != nil {
		f.Fatal(err)
	}
	forged, err := p.ldevid.signer(f).SignCommand(revoke)
	if err != nil {
		f.Fatal(err)
	}
	resp, err := p.responder.signer(f).SignResponse(okResponse())
	if err != nil {
		f.Fatal(err)
	}
	for _, b := range [][]byte{cmd, cmdEd, forged, resp, cmd[:len(cmd)-3], {}, []byte("not cbor")} {
		f.Add(b)
	}
	v := p.verifier()

	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := v.Command(b)
		if err != nil {
			if c != (Command{}) {
				t.Fatalf("Command returned %+v with error %v", c, err)
			}
			if !IsRefusal(err) {
				t.Fatalf("Command error %v is not a refusal", err)
			}
			return
		}
		// Accepted: the leaf of the x5chain must be a responder chaining to
		// the test root, and the signature must check.
		var tag cbor.RawTag
		if err := cbor.Unmarshal(b, &tag); err != nil {
			t.Fatalf("accepted a non-tag: %v", err)
		}
		var parts []cbor.RawMessage
		if err := cbor.Unmarshal(tag.Content, &parts); err != nil || len(parts) != 4 {
			t.Fatalf("accepted a message that is not an array of 4: %v", err)
		}
		var protected []byte
		if err := cbor.Unmarshal(parts[0], &protected); err != nil {
			t.Fatal(err)
		}
		var hdr map[int]any
		if err := cbor.Unmarshal(protected, &hdr); err != nil {
			t.Fatal(err)
		}
		var leafDER []byte
		var inter []*x509.Certificate
		switch x := hdr[labelX5Chain].(type) {
		case []byte:
			leafDER = x
		case []any:
			leafDER, _ = x[0].([]byte)
			for _, e := range x[1:] {
				d, _ := e.([]byte)
				if c, err := x509.ParseCertificate(d); err == nil {
					inter = append(inter, c)
				}
			}
		}
		leaf, err := x509.ParseCertificate(leafDER)
		if err != nil {
			t.Fatalf("accepted without a leaf certificate: %v", err)
		}
		if !slices.ContainsFunc(leaf.URIs, func(u *url.URL) bool { return u.String() == ResponderURI }) {
			t.Fatalf("accepted a command signed by %s, not a responder", leaf.Subject)
		}
		pool := x509.NewCertPool()
		for _, c := range inter {
			pool.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: p.roots(), Intermediates: pool, CurrentTime: testNow,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("accepted a command whose signer does not chain to the root: %v", err)
		}
		if _, err := checkSign1(b, TypeCommand, leaf); err != nil {
			t.Fatalf("accepted a command that does not check: %v", err)
		}
	})
}
