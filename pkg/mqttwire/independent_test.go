package mqttwire

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The interop tests check the wire format against an encoder and a decoder
// written apart from this package: testdata/cose_request.py builds requests
// with python3-cbor2 and python3-cryptography, testdata/cose_response.py
// verifies and decodes what Embark signs. They are skipped when no Python 3
// with both modules is found, unless EMBARK_INTEROP_REQUIRED=1. EMBARK_PYTHON
// names the interpreter to use first.

// interopPython returns a Python 3 interpreter that has cbor2 and
// cryptography.
func interopPython(t *testing.T) string {
	t.Helper()
	var candidates []string
	if p := os.Getenv("EMBARK_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	candidates = append(candidates, "python3", "/usr/bin/python3")
	var tried []string
	for _, c := range candidates {
		path, err := exec.LookPath(c)
		if err != nil {
			tried = append(tried, c+": not found")
			continue
		}
		out, err := exec.Command(path, "-c", "import cbor2, cryptography").CombinedOutput()
		if err == nil {
			return path
		}
		tried = append(tried, path+": "+strings.TrimSpace(string(out)))
	}
	msg := "no python3 with cbor2 and cryptography (" + strings.Join(tried, "; ") + ")"
	if os.Getenv("EMBARK_INTEROP_REQUIRED") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pemCerts(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes()
}

// runPython runs a testdata script and returns its stdout; a non-zero exit
// is returned as an *exec.ExitError with stderr in the message.
func runPython(t *testing.T, python string, stdin []byte, script string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("testdata", script)}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdin = bytes.NewReader(stdin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), errors.Join(err, errors.New(strings.TrimSpace(stderr.String())))
	}
	return stdout.Bytes(), nil
}

func TestInteropPythonRequest(t *testing.T) {
	python := interopPython(t)
	p := getPKI(t)
	dir := t.TempDir()
	csrPath := writeFile(t, dir, "device.csr", p.csr)

	tests := []struct {
		name    string
		by      issued
		op      Op
		csr     bool
		applied uint64
		// signKey, when set, signs instead of by.key.
		signKey any
		// deterministic: the signature scheme is (EdDSA), so that two runs
		// must give the same bytes.
		deterministic bool
		err           error
	}{
		{name: "ok/enroll ES256 with a 2-certificate chain", by: p.device, op: OpEnroll, csr: true},
		{name: "ok/renew ES256", by: p.ldevid, op: OpRenew, csr: true},
		{name: "ok/state EdDSA", by: p.deviceEd, op: OpState, applied: 12, deterministic: true},
		{name: "ok/state ES384", by: p.responderP384, op: OpState, applied: 1},
		{name: "fail/signed by another key than the leaf", by: p.device, op: OpEnroll, csr: true,
			signKey: p.stranger, err: ErrBadSignature},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := any(tt.by.key)
			if tt.signKey != nil {
				key = tt.signKey
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				t.Fatal(err)
			}
			keyPath := writeFile(t, dir, "key"+strconv.Itoa(i)+".pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			chainPath := writeFile(t, dir, "chain"+strconv.Itoa(i)+".pem", pemCerts(tt.by.chain...))
			nonce := testNonce(byte(i))
			args := []string{"--key", keyPath, "--chain", chainPath, "--device", testDevice,
				"--nonce", hex.EncodeToString(nonce), "--op", string(tt.op)}
			if tt.csr {
				args = append(args, "--csr", csrPath)
			}
			if tt.applied != 0 {
				args = append(args, "--applied", strconv.FormatUint(tt.applied, 10))
			}
			out, err := runPython(t, python, nil, "cose_request.py", args...)
			if err != nil {
				t.Fatalf("cose_request.py: %v", err)
			}
			msg, err := hex.DecodeString(strings.TrimSpace(string(out)))
			if err != nil {
				t.Fatalf("cose_request.py printed no hex: %v", err)
			}

			got, err := OpenRequest(msg)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || got != nil {
					t.Fatalf("OpenRequest = %v, %v; want %v", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("OpenRequest of the Python request: %v", err)
			}
			want := Request{Op: tt.op, Device: testDevice, Nonce: nonce, Applied: tt.applied}
			if tt.csr {
				want.CSR = p.csr
			}
			if !reflect.DeepEqual(got.Request, want) {
				t.Fatalf("OpenRequest = %+v, want %+v", got.Request, want)
			}
			if len(got.Chain) != len(tt.by.chain) {
				t.Fatalf("x5chain of %d certificates, want %d", len(got.Chain), len(tt.by.chain))
			}
			for j, c := range got.Chain {
				if !c.Equal(tt.by.chain[j]) {
					t.Fatalf("x5chain[%d] = %s, want %s", j, c.Subject, tt.by.chain[j].Subject)
				}
			}

			// --out writes the same message in binary; EdDSA signatures are
			// deterministic, so the two runs must agree byte for byte.
			outPath := filepath.Join(dir, "msg"+strconv.Itoa(i)+".cbor")
			if _, err := runPython(t, python, nil, "cose_request.py", append(args, "--out", outPath)...); err != nil {
				t.Fatalf("cose_request.py --out: %v", err)
			}
			bin, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := OpenRequest(bin); err != nil {
				t.Fatalf("OpenRequest of the --out message: %v", err)
			}
			if tt.deterministic && !bytes.Equal(bin, msg) {
				t.Fatalf("--out wrote %x, stdout had %x", bin, msg)
			}
		})
	}
}

func TestInteropPythonResponse(t *testing.T) {
	python := interopPython(t)
	p := getPKI(t)
	dir := t.TempDir()
	rootPath := writeFile(t, dir, "root.pem", pemCerts(p.root))
	otherRootPath := writeFile(t, dir, "other-root.pem", pemCerts(p.otherRoot))
	at := testNow.Format("2006-01-02T15:04:05Z")

	resp := okResponse()
	resp.Reason, resp.Message, resp.RetryAfter, resp.NonceTTL = "none", "all good", 30, 120
	signed := func(by issued) []byte {
		b, err := by.signer(t).SignResponse(resp)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := signed(p.responder)

	tests := []struct {
		name string
		msg  []byte
		args []string
		ok   bool
		// reason is part of the refusal cose_response.py must print.
		reason string
	}{
		{name: "ok/ES256 responder checked to the root", msg: good, args: []string{"--root", rootPath, "--at", at}, ok: true},
		{name: "ok/EdDSA responder", msg: signed(p.responderEd), args: []string{"--root", rootPath}, ok: true},
		{name: "ok/ES384 responder", msg: signed(p.responderP384), args: []string{"--root", rootPath}, ok: true},
		{name: "fail/tampered", msg: tamper(t, good, resp.Nonce), reason: "InvalidSignature"},
		{name: "fail/other root", msg: good, args: []string{"--root", otherRootPath}, reason: "is not issued by"},
		{name: "fail/signed by an LDevID", msg: signed(p.ldevid), args: []string{"--root", rootPath},
			reason: "not Embark's responder"},
		{name: "fail/expired", msg: signed(p.shortResponder), args: []string{"--root", rootPath,
			"--at", testNow.Add(2 * time.Hour).Format("2006-01-02T15:04:05Z")}, reason: "is not valid at"},
		{name: "fail/a command is not a response", msg: func() []byte {
			b, err := p.responder.signer(t).SignCommand(okCommand())
			if err != nil {
				t.Fatal(err)
			}
			return b
		}(), reason: "content type"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, dir, "resp"+strconv.Itoa(i)+".cbor", tt.msg)
			out, err := runPython(t, python, nil, "cose_response.py", append([]string{"--in", path}, tt.args...)...)
			if !tt.ok {
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(err.Error(), tt.reason) {
					t.Fatalf("cose_response.py = %s, %v; want a refusal (exit 1) for %q", out, err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatalf("cose_response.py: %v", err)
			}
			var fields map[string]any
			if err := json.Unmarshal(out, &fields); err != nil {
				t.Fatalf("cose_response.py printed %q: %v", out, err)
			}
			want := map[string]any{
				"1":  string(resp.Op),
				"2":  resp.Device,
				"3":  hex.EncodeToString(resp.Correlation),
				"4":  hex.EncodeToString(resp.Nonce),
				"5":  float64(resp.Seq),
				"6":  string(resp.Status),
				"7":  resp.Reason,
				"8":  resp.Message,
				"9":  float64(resp.RetryAfter),
				"10": hex.EncodeToString(resp.Certificate),
				"11": []any{hex.EncodeToString(resp.Chain[0]), hex.EncodeToString(resp.Chain[1])},
				"12": float64(resp.NonceTTL),
				"13": resp.Zone,
				"14": resp.State,
			}
			if !reflect.DeepEqual(fields, want) {
				t.Fatalf("Python decoded %v, want %v", fields, want)
			}
		})
	}

	// Hex on stdin gives the same answer as the binary file.
	out, err := runPython(t, python, []byte(hex.EncodeToString(good)), "cose_response.py", "--in", "-", "--root", rootPath)
	if err != nil || !bytes.Contains(out, []byte(`"13": "plant-a"`)) {
		t.Fatalf("cose_response.py --in -: %s, %v", out, err)
	}
}
