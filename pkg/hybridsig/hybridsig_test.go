package hybridsig

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/cloudflare/circl/sign/mldsa/mldsa65"
)

func mustKey(t testing.TB) *PrivateKey {
	t.Helper()
	k, err := GenerateKey(rand.Reader)
	if err != nil {
		t.Fatalf("GenerateKey: %v", err)
	}
	return k
}

func mustSign(t testing.TB, k *PrivateKey, msg, ctx []byte) []byte {
	t.Helper()
	sig, err := k.SignContext(rand.Reader, msg, ctx)
	if err != nil {
		t.Fatalf("SignContext: %v", err)
	}
	return sig
}

// ecdsaOnly returns a DER ECDSA signature by k over the representative of
// msg, as a well-formed ECDSA component.
func ecdsaOnly(t *testing.T, k *PrivateKey, msg []byte) []byte {
	t.Helper()
	mp, err := MessageRepresentative(msg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(mp)
	s, err := ecdsa.SignASN1(rand.Reader, k.ec, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func concat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestSizes(t *testing.T) {
	if MLDSAPublicKeySize != 1952 || MLDSASignatureSize != 3309 || PublicKeySize != 2017 {
		t.Fatalf("sizes: ML-DSA pk %d sig %d, hybrid pk %d", MLDSAPublicKeySize, MLDSASignatureSize, PublicKeySize)
	}
	k := mustKey(t)
	if n := len(k.Public().Bytes()); n != PublicKeySize {
		t.Fatalf("len(Bytes()) = %d, want %d", n, PublicKeySize)
	}
	sig := mustSign(t, k, []byte("m"), nil)
	if len(sig) < MinSignatureSize || len(sig) > MaxSignatureSize {
		t.Fatalf("signature of %d bytes outside [%d, %d]", len(sig), MinSignatureSize, MaxSignatureSize)
	}
}

// TestMessageRepresentative checks M' against the worked example of
// id-MLDSA65-ECDSA-P256-SHA512 in draft-ietf-lamps-pq-composite-sigs.
func TestMessageRepresentative(t *testing.T) {
	const (
		prefixHex = "436f6d706f73697465416c676f726974686d5369676e61747572657332303235"
		labelHex  = "434f4d505349472d4d4c44534136352d45434453412d503235362d534841353132"
		phHex     = "0f89ee1fcb7b0a4f7809d1267a029719004c5a5e5ec323a7c3523a20974f9a3f" +
			"202f56fadba4cd9e8d654ab9f2e96dc5c795ea176fa20ede8d854c342f903533"
	)
	msg, _ := hex.DecodeString("00010203040506070809")
	tests := []struct {
		name    string
		ctx     string // hex
		want    string // hex
		wantErr error
	}{
		{name: "ok/empty context", ctx: "", want: prefixHex + labelHex + "00" + phHex},
		{name: "ok/context", ctx: "0813061205162623", want: prefixHex + labelHex + "08" + "0813061205162623" + phHex},
		{name: "ok/255-byte context", ctx: strings.Repeat("aa", 255), want: prefixHex + labelHex + "ff" + strings.Repeat("aa", 255) + phHex},
		{name: "fail/256-byte context", ctx: strings.Repeat("aa", 256), wantErr: ErrContextTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, _ := hex.DecodeString(tt.ctx)
			got, err := MessageRepresentative(msg, ctx)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				if got != nil {
					t.Fatalf("got %x with an error", got)
				}
				return
			}
			if h := hex.EncodeToString(got); h != tt.want {
				t.Fatalf("M' = %s\nwant   %s", h, tt.want)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	k, other := mustKey(t), mustKey(t)
	msg, msg2 := []byte("manifest revision 7"), []byte("manifest revision 8")
	ctx := []byte("embark voucher")
	sig := mustSign(t, k, msg, nil)
	sig2 := mustSign(t, k, msg2, nil)
	sigCtx := mustSign(t, k, msg, ctx)
	mlPart, ecPart := sig[:MLDSASignatureSize], sig[MLDSASignatureSize:]

	flipped := bytes.Clone(sig)
	flipped[100] ^= 0x01 // inside the ML-DSA-65 component

	tests := []struct {
		name    string
		key     *PublicKey
		msg     []byte
		ctx     []byte
		sig     []byte
		wantIs  []error
		wantNot []error
	}{
		{name: "ok/round trip", key: k.Public(), msg: msg, sig: sig},
		{name: "ok/with context", key: k.Public(), msg: msg, ctx: ctx, sig: sigCtx},
		{name: "ok/empty message", key: k.Public(), msg: nil, sig: mustSign(t, k, nil, nil)},
		{name: "fail/only ECDSA half valid", key: k.Public(), msg: msg, sig: flipped,
			wantIs: []error{ErrMLDSA}, wantNot: []error{ErrECDSA, ErrMalformed}},
		{name: "fail/only ECDSA half valid (ML-DSA half from another message)", key: k.Public(), msg: msg,
			sig: concat(sig2[:MLDSASignatureSize], ecPart), wantIs: []error{ErrMLDSA}, wantNot: []error{ErrECDSA, ErrMalformed}},
		{name: "fail/only ML-DSA half valid", key: k.Public(), msg: msg,
			sig: concat(mlPart, ecdsaOnly(t, k, msg2)), wantIs: []error{ErrECDSA}, wantNot: []error{ErrMLDSA, ErrMalformed}},
		{name: "fail/only ML-DSA half valid (ECDSA half of another key)", key: k.Public(), msg: msg,
			sig: concat(mlPart, ecdsaOnly(t, other, msg)), wantIs: []error{ErrECDSA}, wantNot: []error{ErrMLDSA, ErrMalformed}},
		{name: "fail/moved to another message", key: k.Public(), msg: msg2, sig: sig,
			wantIs: []error{ErrMLDSA, ErrECDSA}, wantNot: []error{ErrMalformed}},
		{name: "fail/other key", key: other.Public(), msg: msg, sig: sig,
			wantIs: []error{ErrMLDSA, ErrECDSA}, wantNot: []error{ErrMalformed}},
		{name: "fail/other context", key: k.Public(), msg: msg, ctx: []byte("embark manifest"), sig: sigCtx,
			wantIs: []error{ErrMLDSA, ErrECDSA}},
		{name: "fail/context dropped", key: k.Public(), msg: msg, sig: sigCtx,
			wantIs: []error{ErrMLDSA, ErrECDSA}},
		{name: "fail/context too long", key: k.Public(), msg: msg, ctx: make([]byte, 256), sig: sig,
			wantIs: []error{ErrContextTooLong}, wantNot: []error{ErrMLDSA, ErrECDSA}},
		{name: "fail/truncated", key: k.Public(), msg: msg, sig: sig[:len(sig)-1],
			wantIs: []error{ErrMalformed}, wantNot: []error{ErrMLDSA, ErrECDSA}},
		{name: "fail/only the ML-DSA half", key: k.Public(), msg: msg, sig: mlPart,
			wantIs: []error{ErrMalformed}},
		{name: "fail/only the ECDSA half", key: k.Public(), msg: msg, sig: ecPart,
			wantIs: []error{ErrMalformed}},
		{name: "fail/trailing byte", key: k.Public(), msg: msg, sig: concat(sig, []byte{0}),
			wantIs: []error{ErrMalformed}},
		{name: "fail/ECDSA half not DER", key: k.Public(), msg: msg,
			sig: concat(mlPart, bytes.Repeat([]byte{0xff}, 70)), wantIs: []error{ErrMalformed}},
		{name: "fail/empty", key: k.Public(), msg: msg, sig: nil, wantIs: []error{ErrMalformed}},
		{name: "fail/too long", key: k.Public(), msg: msg, sig: make([]byte, MaxSignatureSize+1), wantIs: []error{ErrMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := bytes.Clone(tt.sig)
			err := tt.key.VerifyContext(tt.msg, tt.ctx, tt.sig)
			if len(tt.wantIs) == 0 {
				if err != nil {
					t.Fatalf("VerifyContext: %v", err)
				}
				if tt.ctx == nil {
					if err := tt.key.Verify(tt.msg, tt.sig); err != nil {
						t.Fatalf("Verify: %v", err)
					}
				}
				return
			}
			if err == nil {
				t.Fatal("VerifyContext accepted the signature")
			}
			for _, want := range tt.wantIs {
				if !errors.Is(err, want) {
					t.Errorf("err = %v, want it to match %v", err, want)
				}
			}
			for _, not := range tt.wantNot {
				if errors.Is(err, not) {
					t.Errorf("err = %v, must not match %v", err, not)
				}
			}
			if !bytes.Equal(before, tt.sig) {
				t.Error("VerifyContext changed the signature")
			}
		})
	}
}

func TestZeroKeys(t *testing.T) {
	var p *PublicKey
	if err := p.Verify([]byte("m"), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("nil key Verify = %v, want ErrMalformed", err)
	}
	if err := new(PublicKey).Verify([]byte("m"), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("zero key Verify = %v, want ErrMalformed", err)
	}
	if sig, err := new(PrivateKey).Sign(nil, []byte("m")); err == nil || sig != nil {
		t.Fatalf("zero key Sign = %x, %v", sig, err)
	}
}

func TestPublicKeyEncoding(t *testing.T) {
	k := mustKey(t)
	pub := k.Public()
	raw := pub.Bytes()

	t.Run("ok/round trip", func(t *testing.T) {
		p, err := ParsePublicKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Equal(pub) || p.KeyID() != pub.KeyID() {
			t.Fatal("parsed key differs")
		}
		if err := p.Verify([]byte("x"), mustSign(t, k, []byte("x"), nil)); err != nil {
			t.Fatalf("parsed key does not verify: %v", err)
		}
	})
	t.Run("ok/layout", func(t *testing.T) {
		mlPub := k.ml.Public().(*mldsa65.PublicKey)
		if !bytes.Equal(raw[:MLDSAPublicKeySize], mlPub.Bytes()) {
			t.Fatal("first part is not the ML-DSA-65 public key")
		}
		// The uncompressed point ends a P-256 SubjectPublicKeyInfo.
		spki, err := x509.MarshalPKIXPublicKey(&k.ec.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		if point := spki[len(spki)-ECDSAPublicKeySize:]; !bytes.Equal(raw[MLDSAPublicKeySize:], point) || point[0] != 4 {
			t.Fatal("second part is not the uncompressed P-256 point")
		}
	})
	t.Run("ok/key id", func(t *testing.T) {
		sum := sha256.Sum256(raw)
		if pub.KeyID() != hex.EncodeToString(sum[:]) {
			t.Fatalf("KeyID %s is not the SHA-256 of Bytes", pub.KeyID())
		}
		if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(pub.KeyID()) {
			t.Fatalf("KeyID %q is not 64 lower-case hex digits", pub.KeyID())
		}
	})
	t.Run("ok/bytes is a copy", func(t *testing.T) {
		b := pub.Bytes()
		b[0] ^= 0xff
		if !bytes.Equal(pub.Bytes(), raw) {
			t.Fatal("modifying Bytes() changed the key")
		}
	})

	notOnCurve := bytes.Clone(raw)
	notOnCurve[len(notOnCurve)-1] ^= 0x01
	compressed := concat(raw[:MLDSAPublicKeySize], []byte{0x02}, raw[MLDSAPublicKeySize+1:MLDSAPublicKeySize+33])
	bad := []struct {
		name string
		b    []byte
	}{
		{"fail/empty", nil},
		{"fail/truncated", raw[:len(raw)-1]},
		{"fail/trailing byte", concat(raw, []byte{0})},
		{"fail/point not on curve", notOnCurve},
		{"fail/compressed point", compressed},
		{"fail/point at infinity", concat(raw[:MLDSAPublicKeySize], make([]byte, ECDSAPublicKeySize))},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			p, err := ParsePublicKey(tt.b)
			if !errors.Is(err, ErrMalformed) || p != nil {
				t.Fatalf("ParsePublicKey = %v, %v; want nil, ErrMalformed", p, err)
			}
		})
	}
}

func TestEqual(t *testing.T) {
	a, b := mustKey(t).Public(), mustKey(t).Public()
	a2, err := ParsePublicKey(a.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	var nilKey *PublicKey
	tests := []struct {
		name string
		p, q *PublicKey
		want bool
	}{
		{"ok/same", a, a, true},
		{"ok/parsed copy", a, a2, true},
		{"ok/both nil", nilKey, nilKey, true},
		{"fail/different", a, b, false},
		{"fail/nil and key", nilKey, a, false},
		{"fail/key and nil", a, nilKey, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Equal(tt.q); got != tt.want {
				t.Fatalf("Equal = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrivateKeyEncoding(t *testing.T) {
	k := mustKey(t)
	raw, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	t.Run("ok/round trip", func(t *testing.T) {
		k2, err := ParsePrivateKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !k2.Public().Equal(k.Public()) {
			t.Fatal("parsed private key has another public key")
		}
		if err := k.Public().Verify([]byte("x"), mustSign(t, k2, []byte("x"), nil)); err != nil {
			t.Fatalf("signature of the parsed key does not verify: %v", err)
		}
	})
	t.Run("ok/layout", func(t *testing.T) {
		ec, err := x509.ParseECPrivateKey(raw[MLDSASeedSize:])
		if err != nil {
			t.Fatalf("second part is not an ECPrivateKey: %v", err)
		}
		if !ec.Equal(k.ec) {
			t.Fatal("ECDSA key differs")
		}
		var seed [MLDSASeedSize]byte
		copy(seed[:], raw)
		pk, _ := mldsa65.NewKeyFromSeed(&seed)
		if !bytes.Equal(pk.Bytes(), k.Public().Bytes()[:MLDSAPublicKeySize]) {
			t.Fatal("seed does not give the ML-DSA-65 public key")
		}
	})

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.MarshalECPrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name string
		b    []byte
	}{
		{"fail/empty", nil},
		{"fail/seed only", raw[:MLDSASeedSize]},
		{"fail/truncated", raw[:len(raw)-1]},
		{"fail/trailing byte", concat(raw, []byte{0})},
		{"fail/P-384 key", concat(raw[:MLDSASeedSize], p384DER)},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			k2, err := ParsePrivateKey(tt.b)
			if !errors.Is(err, ErrMalformed) || k2 != nil {
				t.Fatalf("ParsePrivateKey = %v, %v; want nil, ErrMalformed", k2, err)
			}
		})
	}
}

func TestPEM(t *testing.T) {
	k := mustKey(t)
	pubPEM := MarshalPublicKeyPEM(k.Public())
	privPEM, err := MarshalPrivateKeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(pubPEM, []byte("-----BEGIN EMBARK HYBRID PUBLIC KEY-----\n")) {
		t.Fatalf("public PEM starts %q", pubPEM[:40])
	}
	if !bytes.HasPrefix(privPEM, []byte("-----BEGIN EMBARK HYBRID PRIVATE KEY-----\n")) {
		t.Fatalf("private PEM starts %q", privPEM[:40])
	}

	t.Run("ok/public round trip", func(t *testing.T) {
		p, err := ParsePublicKeyPEM(pubPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !p.Equal(k.Public()) {
			t.Fatal("parsed key differs")
		}
	})
	t.Run("ok/private round trip", func(t *testing.T) {
		k2, err := ParsePrivateKeyPEM(privPEM)
		if err != nil {
			t.Fatal(err)
		}
		if !k2.Public().Equal(k.Public()) {
			t.Fatal("parsed key differs")
		}
	})
	t.Run("ok/without algorithm header and with trailing newlines", func(t *testing.T) {
		b := pem.EncodeToMemory(&pem.Block{Type: PublicKeyPEMType, Bytes: k.Public().Bytes()})
		p, err := ParsePublicKeyPEM(append(b, "\n\n"...))
		if err != nil {
			t.Fatal(err)
		}
		if !p.Equal(k.Public()) {
			t.Fatal("parsed key differs")
		}
	})

	otherAlg := pem.EncodeToMemory(&pem.Block{Type: PublicKeyPEMType,
		Headers: map[string]string{"Algorithm": "ECDSA-P384-SHA384+ML-DSA-87"}, Bytes: k.Public().Bytes()})
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x00}})
	badPub := []struct {
		name string
		b    []byte
	}{
		{"fail/wrong PEM type (private key)", privPEM},
		{"fail/wrong PEM type (certificate)", cert},
		{"fail/other algorithm", otherAlg},
		{"fail/not PEM", k.Public().Bytes()},
		{"fail/empty", nil},
		{"fail/two blocks", concat(pubPEM, pubPEM)},
		{"fail/garbage after block", concat(pubPEM, []byte("x"))},
	}
	for _, tt := range badPub {
		t.Run("public/"+tt.name, func(t *testing.T) {
			p, err := ParsePublicKeyPEM(tt.b)
			if !errors.Is(err, ErrMalformed) || p != nil {
				t.Fatalf("ParsePublicKeyPEM = %v, %v; want nil, ErrMalformed", p, err)
			}
		})
	}
	badPriv := []struct {
		name string
		b    []byte
	}{
		{"fail/wrong PEM type (public key)", pubPEM},
		{"fail/wrong PEM type (certificate)", cert},
		{"fail/empty", nil},
	}
	for _, tt := range badPriv {
		t.Run("private/"+tt.name, func(t *testing.T) {
			k2, err := ParsePrivateKeyPEM(tt.b)
			if !errors.Is(err, ErrMalformed) || k2 != nil {
				t.Fatalf("ParsePrivateKeyPEM = %v, %v; want nil, ErrMalformed", k2, err)
			}
		})
	}
}

// TestIndependentImplementation checks both directions against
// python3-cryptography's ML-DSA-65 and ECDSA: it verifies our signature and
// signs with our private key encoding for us to verify.
func TestIndependentImplementation(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	k := mustKey(t)
	dir := t.TempDir()
	msg := []byte("a message checked by another implementation")
	ctx := []byte("embark test")
	priv, err := k.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"pub": k.Public().Bytes(), "priv": priv, "msg": msg, "ctx": ctx, "sig": mustSign(t, k, msg, ctx),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(py, filepath.Join("testdata", "composite_check.py"), dir)
	out, err := cmd.CombinedOutput()
	if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 77 {
		t.Skip("python3-cryptography with ML-DSA not installed")
	}
	if err != nil {
		t.Fatalf("independent verification failed: %v\n%s", err, out)
	}
	pysig, err := os.ReadFile(filepath.Join(dir, "pysig"))
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Public().VerifyContext(msg, ctx, pysig); err != nil {
		t.Fatalf("signature by the independent implementation: %v", err)
	}
	if err := k.Public().VerifyContext(msg, nil, pysig); !errors.Is(err, ErrMLDSA) || !errors.Is(err, ErrECDSA) {
		t.Fatalf("independent signature verified under another context: %v", err)
	}
}
