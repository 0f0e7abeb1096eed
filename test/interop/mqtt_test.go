package interop

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/mqttwire"
)

// A device built only from independent parts onboards over MQTT:
// mosquitto_rr asks for a nonce (MQTT v5 request/response through Embark's
// broker), OpenSSL makes the key and CSR, Python (cbor2 + cryptography)
// encodes and signs the COSE request, and Eclipse Paho's Python client
// sends it — mosquitto_rr 2.0.11 sends an empty message for -f and -s, so
// it cannot carry a binary request. Python checks every signed answer
// against the Embark root.
func TestMQTTMosquittoRRPython(t *testing.T) {
	rr := lookPath(t, "mosquitto_rr")
	openssl := lookPath(t, "openssl")
	python := interopPython(t)
	e := startEmbark(t)
	f := mint(t, "mqttop", 1)
	e.trust(t, f, true)
	e.importManifest(t, f)
	d := f.take(t)
	c := deviceFiles(t, d, false)
	id := device.ID(f.manufacturer, d.Serial)
	dir := t.TempDir()
	host, port, _ := strings.Cut(e.srv.MQTTAddr().String(), ":")

	decodeHex := func(what string, out []byte) []byte {
		t.Helper()
		b, err := hex.DecodeString(strings.TrimSpace(string(out)))
		if err != nil {
			t.Fatalf("%s printed %q: %v", what, out, err)
		}
		return b
	}
	rrNonce := func() []byte {
		t.Helper()
		args := []string{"-h", host, "-p", port, "-V", "5", "-q", "1", "-i", id,
			"--cafile", e.root, "--cert", c.cert, "--key", c.key,
			"-t", mqttwire.RequestTopic(id, mqttwire.OpNonce), "-e", mqttwire.ResponseTopic(id), "-W", "10", "-F", "%x", "-N"}
		out, err := exec.Command(rr, append(args, "-n")...).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_rr: %v\n%s", err, out)
		}
		return decodeHex("mosquitto_rr", out)
	}
	pahoRequest := func(op mqttwire.Op, payloadFile string) []byte {
		t.Helper()
		out, err := exec.Command(python, filepath.Join("testdata", "mqtt_request.py"), "--host", host, "--port", port,
			"--cafile", e.root, "--cert", c.cert, "--key", c.key, "--id", id, "--topic", mqttwire.RequestTopic(id, op),
			"--response-topic", mqttwire.ResponseTopic(id), "--in", payloadFile).CombinedOutput()
		if err != nil {
			t.Fatalf("paho %s: %v\n%s", op, err, out)
		}
		return decodeHex("paho", out)
	}
	// check verifies an answer with the independent decoder and returns its
	// payload fields.
	check := func(msg []byte) map[string]any {
		t.Helper()
		in := filepath.Join(dir, "answer.cbor")
		if err := os.WriteFile(in, msg, 0o600); err != nil {
			t.Fatal(err)
		}
		script := filepath.Join("..", "..", "pkg", "mqttwire", "testdata", "cose_response.py")
		out, err := exec.Command(python, script, "--in", in, "--root", e.root).CombinedOutput()
		if err != nil {
			t.Fatalf("independent check of the answer: %v\n%s", err, out)
		}
		var fields map[string]any
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatalf("decoder output %q: %v", out, err)
		}
		return fields
	}

	nonce := check(rrNonce())
	if nonce["6"] != "ok" || nonce["4"] == nil {
		t.Fatalf("nonce answer %v", nonce)
	}

	keyFile, csrFile := filepath.Join(dir, "ldevid.key"), filepath.Join(dir, "ldevid.csr")
	if out, err := exec.Command(openssl, "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-keyout", keyFile, "-subj", "/CN="+d.Serial, "-outform", "DER", "-out", csrFile).CombinedOutput(); err != nil {
		t.Fatalf("openssl req: %v\n%s", err, out)
	}
	reqFile := filepath.Join(dir, "enroll.cbor")
	script := filepath.Join("..", "..", "pkg", "mqttwire", "testdata", "cose_request.py")
	if out, err := exec.Command(python, script, "--key", c.key, "--chain", c.cert, "--device", id,
		"--nonce", nonce["4"].(string), "--csr", csrFile, "--op", "enroll", "--out", reqFile).CombinedOutput(); err != nil {
		t.Fatalf("independent encoder: %v\n%s", err, out)
	}
	answer := check(pahoRequest(mqttwire.OpEnroll, reqFile))
	if answer["6"] != "ok" {
		t.Fatalf("enroll answer %v", answer)
	}
	if answer["4"] != nonce["4"] {
		t.Fatalf("answer bound to nonce %v, want %v", answer["4"], nonce["4"])
	}
	der, err := hex.DecodeString(answer["10"].(string))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != id {
		t.Fatalf("LDevID names %v, want %s", cert.URIs, id)
	}
	pub, err := exec.Command(openssl, "pkey", "-in", keyFile, "-pubout", "-outform", "DER").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pub, cert.RawSubjectPublicKeyInfo) {
		t.Fatal("the LDevID does not certify the key OpenSSL made")
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.srv.CA().Root())
	inter.AddCert(e.srv.CA().Intermediate())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("LDevID does not chain to the Embark root: %v", err)
	}
}

func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		missing(t, name, err)
	}
	return p
}

// interopPython returns a python3 that has cbor2, cryptography and paho
// (Debian python3-cbor2, python3-cryptography, python3-paho-mqtt).
func interopPython(t *testing.T) string {
	t.Helper()
	for _, c := range []string{os.Getenv("EMBARK_PYTHON"), "python3", "/usr/bin/python3"} {
		if c == "" {
			continue
		}
		p, err := exec.LookPath(c)
		if err != nil {
			continue
		}
		if exec.Command(p, "-c", "import cbor2, cryptography, paho.mqtt").Run() == nil {
			return p
		}
	}
	missing(t, "python3 with cbor2, cryptography and paho.mqtt (python3-cbor2 python3-cryptography python3-paho-mqtt)", exec.ErrNotFound)
	return ""
}
