package manifest

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// streamSentinels are the errors a refusal may match.
var streamSentinels = []error{ErrMalformed, ErrPayloadType, ErrUnknownSigner, ErrSignature, ErrInvalid,
	ErrDuplicate, ErrTooLarge, ErrRead, hybridsig.ErrECDSA, hybridsig.ErrMLDSA, hybridsig.ErrMalformed}

// sentinelsOf returns which of streamSentinels err matches.
func sentinelsOf(err error) []bool {
	out := make([]bool, len(streamSentinels))
	for i, s := range streamSentinels {
		out[i] = errors.Is(err, s)
	}
	return out
}

// b64String returns payload as a JSON string of standard base64, with an
// escaped new line every lineLen characters (0: none) and, with escape, its
// letters A and '/' written as \u0041 and \/.
func b64String(payload []byte, lineLen int, escape bool) string {
	enc := base64.StdEncoding.EncodeToString(payload)
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(enc); i++ {
		if lineLen > 0 && i > 0 && i%lineLen == 0 {
			b.WriteString(`\n`)
		}
		switch c := enc[i]; {
		case escape && c == 'A':
			b.WriteString(`\u0041`)
		case escape && c == '/':
			b.WriteString(`\/`)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// sigsJSON returns the signatures member value of payload signed by keys.
func sigsJSON(t testing.TB, payloadType string, payload []byte, keys ...*hybridsig.PrivateKey) string {
	t.Helper()
	var sigs []Signature
	for _, k := range keys {
		sig, err := k.Sign(rand.Reader, PAE(payloadType, payload))
		if err != nil {
			t.Fatal(err)
		}
		sigs = append(sigs, Signature{KeyID: k.Public().KeyID(), Sig: sig})
	}
	return string(mustJSON(t, sigs))
}

// splicedSigs returns a signatures member value under keyID whose ML-DSA-65
// half is mlKey's and whose ECDSA half is ecKey's.
func splicedSigs(t testing.TB, payload []byte, keyID string, mlKey, ecKey *hybridsig.PrivateKey) string {
	t.Helper()
	pae := PAE(PayloadType, payload)
	ml, err := mlKey.Sign(rand.Reader, pae)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecKey.Sign(rand.Reader, pae)
	if err != nil {
		t.Fatal(err)
	}
	sig := append(bytes.Clone(ml[:hybridsig.MLDSASignatureSize]), ec[hybridsig.MLDSASignatureSize:]...)
	return string(mustJSON(t, []Signature{{KeyID: keyID, Sig: sig}}))
}

// object returns a JSON object of raw members "key", value, "key", value...
func object(kv ...string) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%q:%s", kv[i], kv[i+1])
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// checkSame opens env with Verify and VerifyReader and checks that both
// accept it with the same result or both refuse it with the same errors,
// and that the stream leaves no temporary file behind. It returns the
// stream's error.
func checkSame(t *testing.T, env []byte, keys KeyLookup, opts ...OpenOption) error {
	t.Helper()
	dir := t.TempDir()
	v, errOpen := Verify(env, keys, opts...)
	s, errStream := VerifyReader(bytes.NewReader(env), keys, append(opts, WithTempDir(dir))...)
	switch {
	case errOpen == nil && errStream == nil:
		m, err := s.ReadAll()
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		if !reflect.DeepEqual(m, v.Manifest) {
			t.Errorf("stream read %+v\nOpen read %+v", m, v.Manifest)
		}
		if !reflect.DeepEqual(s.KeyIDs(), v.KeyIDs) || s.PayloadSHA256() != v.PayloadSHA256 {
			t.Errorf("stream: keys %v, payload %s; Open: keys %v, payload %s", s.KeyIDs(), s.PayloadSHA256(), v.KeyIDs, v.PayloadSHA256)
		}
		if h := s.Header(); h.Manufacturer != m.Manufacturer || h.Revision != m.Revision || !h.IssuedAt.Equal(m.IssuedAt) || s.Len() != len(m.Devices) {
			t.Errorf("header %+v, %d devices", h, s.Len())
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	case errOpen != nil && errStream != nil:
		if s != nil {
			t.Error("a stream returned with an error")
		}
		if got, want := sentinelsOf(errStream), sentinelsOf(errOpen); !reflect.DeepEqual(got, want) {
			t.Errorf("stream refused with %v\nOpen refused with %v", errStream, errOpen)
		}
		var ve1, ve2 *ValidationError
		if errors.As(errOpen, &ve1) != errors.As(errStream, &ve2) || ve1 != nil && !reflect.DeepEqual(ve1, ve2) {
			t.Errorf("validation errors differ: stream %#v, Open %#v", ve2, ve1)
		}
	default:
		t.Errorf("Open: %v; stream: %v", errOpen, errStream)
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
		t.Errorf("temporary directory holds %v (%v)", ents, err)
	}
	return errStream
}

func TestVerifyReaderAccepts(t *testing.T) {
	a, b := testKeys(t)
	small := mustJSON(t, testManifest(2))
	large := mustJSON(t, testManifest(60)) // well over the spill size
	typ := `"` + PayloadType + `"`
	tests := []struct {
		name string
		env  []byte
	}{
		{name: "ok/small, as Sign writes it", env: mustSign(t, testManifest(2), a)},
		{name: "ok/large, as Sign writes it", env: mustSign(t, testManifest(60), a)},
		{name: "ok/small, signatures first",
			env: object("signatures", sigsJSON(t, PayloadType, small, a), "payload", b64String(small, 0, false), "payloadType", typ)},
		{name: "ok/large, signatures first",
			env: object("signatures", sigsJSON(t, PayloadType, large, a), "payload", b64String(large, 0, false), "payloadType", typ)},
		{name: "ok/large, payload type last",
			env: object("payload", b64String(large, 0, false), "signatures", sigsJSON(t, PayloadType, large, a), "payloadType", typ)},
		{name: "ok/large, base64 in lines",
			env: object("payloadType", typ, "payload", b64String(large, 76, false), "signatures", sigsJSON(t, PayloadType, large, a))},
		{name: "ok/large, escaped characters in the base64",
			env: object("payloadType", typ, "payload", b64String(large, 64, true), "signatures", sigsJSON(t, PayloadType, large, a))},
		{name: "ok/large, white space around everything",
			env: []byte(" \n{ \"payloadType\" :\t" + typ + " ,\r\n \"payload\" : " + b64String(large, 0, false) +
				" , \"signatures\" : " + sigsJSON(t, PayloadType, large, a) + " }\n\t ")},
		{name: "ok/large, field names in another case",
			env: object("PayloadType", typ, "PAYLOAD", b64String(large, 0, false), "Signatures", sigsJSON(t, PayloadType, large, a))},
		{name: "ok/large, also signed by an unknown key",
			env: object("payloadType", typ, "payload", b64String(large, 0, false), "signatures", sigsJSON(t, PayloadType, large, b, a))},
		{name: "ok/large, an unsigned payload replaced by a later signed one",
			env: object("payloadType", typ, "payload", b64String(mustJSON(t, testManifest(70)), 0, false),
				"payload", b64String(large, 0, false), "signatures", sigsJSON(t, PayloadType, large, a))},
		{name: "ok/large payload, devices before the other members", env: func() []byte {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(large, &m); err != nil {
				t.Fatal(err)
			}
			p := object("devices", string(m["devices"]), "issued_at", string(m["issued_at"]),
				"revision", string(m["revision"]), "manufacturer", string(m["manufacturer"]))
			return object("payloadType", typ, "payload", b64String(p, 0, false), "signatures", sigsJSON(t, PayloadType, p, a))
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkSame(t, tt.env, lookupOf(a.Public())); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

func mustSign(t testing.TB, m *Manifest, k *hybridsig.PrivateKey) []byte {
	t.Helper()
	env, err := Sign(m, k)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestVerifyReaderRefuses(t *testing.T) {
	a, b := testKeys(t)
	aID := a.Public().KeyID()
	typ := `"` + PayloadType + `"`
	large := testManifest(60)
	largeJSON := mustJSON(t, large)
	// env signs payload with a and writes it in the usual order.
	env := func(payload []byte) []byte {
		return object("payloadType", typ, "payload", b64String(payload, 0, false), "signatures", sigsJSON(t, PayloadType, payload, a))
	}
	variant := func(mutate func(m *Manifest)) []byte {
		m := testManifest(60)
		mutate(m)
		return mustJSON(t, m)
	}
	good := env(largeJSON)
	b64 := b64String(largeJSON, 0, false)
	tests := []struct {
		name string
		env  []byte
		opts []OpenOption
		want []error
	}{
		{name: "fail/bad ECDSA half",
			env:  object("payloadType", typ, "payload", b64, "signatures", splicedSigs(t, largeJSON, aID, a, b)),
			want: []error{ErrSignature, hybridsig.ErrECDSA}},
		{name: "fail/bad ML-DSA half",
			env:  object("payloadType", typ, "payload", b64, "signatures", splicedSigs(t, largeJSON, aID, b, a)),
			want: []error{ErrSignature, hybridsig.ErrMLDSA}},
		{name: "fail/bad ML-DSA half, signatures first",
			env:  object("signatures", splicedSigs(t, largeJSON, aID, b, a), "payloadType", typ, "payload", b64),
			want: []error{ErrSignature, hybridsig.ErrMLDSA}},
		{name: "fail/unknown signer",
			env:  object("payloadType", typ, "payload", b64, "signatures", sigsJSON(t, PayloadType, largeJSON, b)),
			want: []error{ErrUnknownSigner}},
		{name: "fail/payload changed after signing",
			env: object("payloadType", typ, "payload", b64String(variant(func(m *Manifest) { m.Revision = 2 }), 0, false),
				"signatures", sigsJSON(t, PayloadType, largeJSON, a)),
			want: []error{ErrSignature, hybridsig.ErrECDSA, hybridsig.ErrMLDSA}},
		{name: "fail/signed payload replaced by a later unsigned one",
			env: object("payloadType", typ, "payload", b64, "payload", b64String(mustJSON(t, testManifest(70)), 0, false),
				"signatures", sigsJSON(t, PayloadType, largeJSON, a)),
			want: []error{ErrSignature, hybridsig.ErrECDSA, hybridsig.ErrMLDSA}},
		{name: "fail/duplicate serial at the end",
			env:  env(variant(func(m *Manifest) { m.Devices[59].Serial = m.Devices[3].Serial })),
			want: []error{ErrDuplicate}},
		{name: "fail/duplicate key at the end",
			env:  env(variant(func(m *Manifest) { m.Devices[59].IDevIDKeySHA256 = m.Devices[7].IDevIDKeySHA256 })),
			want: []error{ErrDuplicate}},
		{name: "fail/invalid entry at the end",
			env:  env(variant(func(m *Manifest) { m.Devices[59].Model = "bad\x01model" })),
			want: []error{ErrInvalid}},
		{name: "fail/invalid header and invalid entry",
			env: env(variant(func(m *Manifest) {
				m.Revision = 0
				m.Devices[1].Serial = m.Devices[0].Serial
			})),
			want: []error{ErrInvalid}},
		{name: "fail/no devices", env: env(variant(func(m *Manifest) { m.Devices = m.Devices[:0] })), want: []error{ErrInvalid}},
		{name: "fail/devices set to null after the array",
			env: env(append(bytes.TrimSuffix(bytes.Clone(largeJSON), []byte("}")), []byte(`,"devices":null}`)...)), want: []error{ErrInvalid}},
		{name: "fail/unknown field in the last entry",
			env:  env(bytes.Replace(largeJSON, []byte(`"serial":"ACME-000060"`), []byte(`"serial":"ACME-000060","color":"red"`), 1)),
			want: []error{ErrMalformed}},
		{name: "fail/unknown payload member", env: env(append(bytes.TrimSuffix(bytes.Clone(largeJSON), []byte("}")), []byte(`,"x":1}`)...)),
			want: []error{ErrMalformed}},
		{name: "fail/data after the payload", env: env(append(bytes.Clone(largeJSON), " {}"...)), want: []error{ErrMalformed}},
		{name: "fail/payload truncated", env: env(largeJSON[:len(largeJSON)-10]), want: []error{ErrMalformed}},
		{name: "fail/payload is an array", env: env([]byte(`[` + string(largeJSON) + `]`)), want: []error{ErrMalformed}},
		{name: "fail/payload is null", env: env([]byte(`null`)), want: []error{ErrInvalid}},
		{name: "fail/devices is not an array",
			env:  env(mustJSON(t, map[string]any{"manufacturer": "acme", "revision": 1, "issued_at": issued, "devices": strings.Repeat("x", 5000)})),
			want: []error{ErrMalformed}},
		{name: "fail/revision as a string", env: env(bytes.Replace(largeJSON, []byte(`"revision":1`), []byte(`"revision":"1"`), 1)),
			want: []error{ErrMalformed}},
		{name: "fail/issued_at with an escape", env: env(bytes.Replace(largeJSON, []byte(`10:00:00Z"`), []byte(`10:00:00\u005a"`), 1)),
			want: []error{ErrMalformed}},
		{name: "fail/envelope truncated in the payload", env: good[:len(good)/2], want: []error{ErrMalformed}},
		{name: "fail/envelope truncated at the end", env: good[:len(good)-1], want: []error{ErrMalformed}},
		{name: "fail/empty", env: nil, want: []error{ErrMalformed}},
		{name: "fail/not JSON", env: []byte("not a manifest"), want: []error{ErrMalformed}},
		{name: "fail/data after the envelope", env: append(bytes.Clone(good), "{}"...), want: []error{ErrMalformed}},
		{name: "fail/over the size limit", env: good, opts: []OpenOption{WithMaxSize(len(good) - 1)}, want: []error{ErrTooLarge}},
		{name: "fail/over the size limit and malformed", env: append([]byte("x"), good...),
			opts: []OpenOption{WithMaxSize(len(good))}, want: []error{ErrTooLarge}},
		{name: "fail/wrong payload type",
			env:  object("payloadType", `"application/json"`, "payload", b64, "signatures", sigsJSON(t, "application/json", largeJSON, a)),
			want: []error{ErrPayloadType}},
		{name: "fail/long payload type", env: object("payloadType", b64, "payload", b64, "signatures", sigsJSON(t, PayloadType, largeJSON, a)),
			want: []error{ErrPayloadType}},
		{name: "fail/long invalid payload type",
			env:  object("payloadType", `"`+strings.Repeat("*", 5000)+`"`, "payload", b64, "signatures", sigsJSON(t, PayloadType, largeJSON, a)),
			want: []error{ErrPayloadType}},
		{name: "fail/payload not base64",
			env:  object("payloadType", typ, "payload", strings.Replace(b64, "A", "*", 1), "signatures", sigsJSON(t, PayloadType, largeJSON, a)),
			want: []error{ErrMalformed}},
		{name: "fail/payload with padding inside", env: object("payloadType", typ,
			"payload", strings.TrimSuffix(b64String(largeJSON[:100], 0, false), `"`)+strings.TrimPrefix(b64, `"`),
			"signatures", sigsJSON(t, PayloadType, largeJSON, a)), want: []error{ErrMalformed}},
		{name: "fail/payload with a non-ASCII escape", env: object("payloadType", typ,
			"payload", strings.Replace(b64, "A", `\u00c1`, 1), "signatures", sigsJSON(t, PayloadType, largeJSON, a)), want: []error{ErrMalformed}},
		{name: "fail/payload with a bad escape", env: object("payloadType", typ,
			"payload", strings.Replace(b64, "A", `\x`, 1), "signatures", sigsJSON(t, PayloadType, largeJSON, a)), want: []error{ErrMalformed}},
		{name: "fail/payload with a raw control character", env: object("payloadType", typ,
			"payload", strings.Replace(b64, "A", "\t", 1), "signatures", sigsJSON(t, PayloadType, largeJSON, a)), want: []error{ErrMalformed}},
		{name: "fail/invalid payload overridden by a valid one",
			env: object("payloadType", typ, "payload", strings.Replace(b64, "A", "*", 1), "payload", b64,
				"signatures", sigsJSON(t, PayloadType, largeJSON, a)),
			want: []error{ErrMalformed}},
		{name: "fail/long unknown member", env: object("payloadType", typ, "payload", b64, "comment", b64,
			"signatures", sigsJSON(t, PayloadType, largeJSON, a)), want: []error{ErrMalformed}},
		{name: "fail/long key", env: object("payloadType", typ, "payload", b64, strings.Repeat("k", 5000), "1",
			"signatures", sigsJSON(t, PayloadType, largeJSON, a)), want: []error{ErrMalformed}},
		{name: "fail/signatures as a long string", env: object("payloadType", typ, "payload", b64, "signatures", b64),
			want: []error{ErrMalformed}},
		{name: "fail/no signatures", env: object("payloadType", typ, "payload", b64, "signatures", "[]"),
			want: []error{ErrMalformed}},
		{name: "fail/two signatures by one key", env: object("payloadType", typ, "payload", b64,
			"signatures", sigsJSON(t, PayloadType, largeJSON, a, a)), want: []error{ErrMalformed}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkSame(t, tt.env, lookupOf(a.Public()), tt.opts...)
			t.Logf("refused: %v", err)
			if err == nil {
				t.Fatal("accepted")
			}
			got := sentinelsOf(err)
			for i, s := range streamSentinels {
				want := false
				for _, w := range tt.want {
					want = want || w == s
				}
				if got[i] != want {
					t.Errorf("errors.Is(err, %v) = %v, want %v", s, got[i], want)
				}
			}
		})
	}
}

// A stream refuses a payload with two devices members, which Open merges.
func TestVerifyReaderDuplicateDevices(t *testing.T) {
	a, _ := testKeys(t)
	m := mustJSON(t, testManifest(3))
	payload := append(bytes.TrimSuffix(bytes.Clone(m), []byte("}")), []byte(`,"devices":[{"serial":"X-1","idevid_key_sha256":"`+fakeKey("x")+`"}]}`)...)
	env := signRaw(t, PayloadType, payload, a)
	if _, err := Open(env, lookupOf(a.Public())); err != nil {
		t.Fatalf("Open: %v", err)
	}
	s, err := VerifyReader(bytes.NewReader(env), lookupOf(a.Public()), WithTempDir(t.TempDir()))
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, errDuplicateMember) || s != nil {
		t.Fatalf("VerifyReader: %v, want ErrMalformed", err)
	}
}

// Entries reads the devices again, in order, and stops at fn's error.
func TestStreamEntries(t *testing.T) {
	a, _ := testKeys(t)
	m := testManifest(40)
	s, err := VerifyReader(bytes.NewReader(mustSign(t, m, a)), lookupOf(a.Public()), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for range 2 {
		var got []Entry
		if err := s.Entries(func(i int, e Entry) error {
			if i != len(got) {
				t.Fatalf("index %d after %d entries", i, len(got))
			}
			got = append(got, e)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, m.Devices) {
			t.Fatal("entries differ from the manifest's")
		}
	}
	stop := errors.New("stop")
	calls := 0
	if err := s.Entries(func(int, Entry) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Entries = %v after %d calls, want stop after 1", err, calls)
	}
}

// A read error is reported as such, not as a malformed envelope.
func TestVerifyReaderReadError(t *testing.T) {
	a, _ := testKeys(t)
	env := mustSign(t, testManifest(60), a)
	boom := errors.New("connection reset")
	dir := t.TempDir()
	r := io.MultiReader(bytes.NewReader(env[:len(env)/2]), iotest.ErrReader(boom))
	_, err := VerifyReader(r, lookupOf(a.Public()), WithTempDir(dir))
	if !errors.Is(err, ErrRead) || !errors.Is(err, boom) || errors.Is(err, ErrMalformed) {
		t.Fatalf("VerifyReader = %v, want ErrRead wrapping the reader's error", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("temporary files left: %v", ents)
	}
}

// The envelope besides its payload is held in memory up to a bound.
func TestVerifyReaderOverhead(t *testing.T) {
	a, b := testKeys(t)
	env := mustSign(t, testManifest(60), a)
	small := func(c *openConfig) error { c.maxOverhead = 8 << 10; return nil }
	if _, err := VerifyReader(bytes.NewReader(env), lookupOf(a.Public()), small, WithTempDir(t.TempDir())); err != nil {
		t.Fatalf("an envelope with one signature: %v", err)
	}
	payload := mustJSON(t, testManifest(60))
	three := object("payloadType", `"`+PayloadType+`"`, "payload", b64String(payload, 0, false),
		"signatures", sigsJSON(t, PayloadType, payload, a, b))
	_, err := VerifyReader(bytes.NewReader(three), lookupOf(a.Public()), small, WithTempDir(t.TempDir()))
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("an envelope with more than the overhead: %v, want ErrTooLarge", err)
	}
}

func TestTrustVerifyReader(t *testing.T) {
	a, _ := testKeys(t)
	tr := &Trust{Name: "beta", ManifestKeys: []*hybridsig.PublicKey{a.Public()}}
	_, err := tr.VerifyReader(bytes.NewReader(mustSign(t, testManifest(2), a)), WithTempDir(t.TempDir()))
	if !errors.Is(err, ErrWrongManufacturer) {
		t.Fatalf("VerifyReader = %v, want ErrWrongManufacturer", err)
	}
	tr.Name = "acme"
	s, err := tr.VerifyReader(bytes.NewReader(mustSign(t, testManifest(2), a)), WithTempDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
