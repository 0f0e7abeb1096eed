package interop

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The two builds of libcoap's client in Debian's libcoap3-bin.
const (
	gnutlsClient  = "coap-client-gnutls"
	opensslClient = "coap-client-openssl"
)

var clientNames = []string{gnutlsClient, opensslClient}

// peerTimeout bounds one run of a peer program.
const peerTimeout = 30 * time.Second

// libcoap is one build of coap-client.
type libcoap struct {
	name, path string
}

// lookClient finds a coap-client build on PATH, or skips the test.
func lookClient(t *testing.T, name string) libcoap {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		missing(t, name, err)
	}
	return libcoap{name: name, path: path}
}

// request is one coap-client invocation.
type request struct {
	method string // get or post
	uri    string
	format string // -t: content format of the payload
	accept string // -A: accepted content format
	body   string // -f: file with the payload
	block  string // -b: block size of block-wise transfers (RFC 7959)
	// cert and key are the client certificate chain and its key (-c, -j).
	cert, key string
	// ca is the CA file the server certificate must chain to (-C). The
	// client verifies the server whenever it is set; -n is never used.
	ca string
}

// reply is what coap-client reported.
type reply struct {
	// Code is the response code ("2.05"), empty if no response arrived.
	Code string
	// Format is the response's Content-Format as libcoap prints it: a
	// number ("281") or a name ("text/plain").
	Format string
	// MaxAge is the response's Max-Age option, empty if absent.
	MaxAge string
	// Diagnostic is the payload of an error response, which libcoap prints
	// on standard error after the code ("4.03 untrusted_chain: ...").
	Diagnostic string
	// Payload is what -o wrote (libcoap writes it for 2.xx responses only);
	// nil if no file was written.
	Payload []byte
	// Args is the command line; Exit its exit status (libcoap's is of
	// little use); Stdout and Stderr are the raw output.
	Args           []string
	Exit           int
	Stdout, Stderr string
}

func (r reply) String() string {
	return "$ " + strings.Join(r.Args, " ") + "\n--- exit status " + strconv.Itoa(r.Exit) +
		", stdout:\n" + r.Stdout + "--- stderr:\n" + r.Stderr
}

var (
	// A PDU trace line of -v 6: "v:1 t:ACK c:2.05 i:8d82 {01} [ Content-Format:281 ] :: ..."
	pduCode   = regexp.MustCompile(`^v:1 t:\S+ c:(\d\.\d\d) `)
	pduFormat = regexp.MustCompile(`Content-Format:([^\s,\]]+)`)
	pduMaxAge = regexp.MustCompile(`Max-Age:(\d+)`)
	// An error response as coap-client prints it on standard error.
	diagLine = regexp.MustCompile(`^(\d\.\d\d) (.*)$`)
)

// do runs coap-client once: verbosity 6 for the PDU trace, a 10 s limit of
// its own (-B) inside the 30 s deadline of the process.
func (c libcoap) do(t *testing.T, req request) reply {
	t.Helper()
	out := filepath.Join(t.TempDir(), "payload")
	args := []string{c.name, "-v", "6", "-B", "10", "-m", req.method}
	for _, o := range []struct{ flag, val string }{
		{"-t", req.format}, {"-A", req.accept}, {"-f", req.body}, {"-b", req.block},
		{"-c", req.cert}, {"-j", req.key}, {"-C", req.ca},
	} {
		if o.val != "" {
			args = append(args, o.flag, o.val)
		}
	}
	args = append(args, "-o", out, req.uri)
	stdout, stderr, err := runPeer(c.path, args[1:]...)
	r := reply{Args: args, Stdout: stdout, Stderr: stderr}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit) && !errors.Is(err, context.DeadlineExceeded):
		r.Exit = exit.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v\n%s", c.name, err, r)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if m := pduCode.FindStringSubmatch(line); m != nil {
			r.Code, r.Format, r.MaxAge = m[1], "", ""
			// Only the header part: the payload may contain anything.
			head, _, _ := strings.Cut(line, "::")
			if f := pduFormat.FindStringSubmatch(head); f != nil {
				r.Format = f[1]
			}
			if f := pduMaxAge.FindStringSubmatch(head); f != nil {
				r.MaxAge = f[1]
			}
		}
	}
	for _, line := range strings.Split(stderr, "\n") {
		if m := diagLine.FindStringSubmatch(line); m != nil {
			r.Diagnostic = m[2]
		}
	}
	if b, err := os.ReadFile(out); err == nil {
		r.Payload = b
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	t.Logf("%s -> %s", strings.Join(args, " "), r.summary())
	return r
}

// mentions reports whether coap-client's output (its log goes to standard
// output or error depending on the level) mentions s, ignoring case.
func (r reply) mentions(s string) bool {
	return strings.Contains(strings.ToLower(r.Stdout+r.Stderr), strings.ToLower(s))
}

func (r reply) summary() string {
	if r.Code == "" {
		return "no response"
	}
	s := r.Code + " (" + r.Format + ")"
	if r.Diagnostic != "" {
		s += " " + r.Diagnostic
	}
	return s
}

// supportsTLS reports whether this build speaks CoAP over TLS: its usage
// text (printed on standard error when run without arguments) names the
// coaps+tcp scheme and TLS support.
func (c libcoap) supportsTLS(t *testing.T) (bool, string) {
	t.Helper()
	_, usage, _ := runPeer(c.path)
	first, _, _ := strings.Cut(usage, "\nUsage")
	return strings.Contains(usage, "coaps+tcp") && strings.Contains(usage, " TLS support"), strings.TrimSpace(first)
}

// runPeer runs a peer program under the peer deadline.
func runPeer(path string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.WaitDelay = 5 * time.Second
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = errors.Join(ctx.Err(), err)
	}
	return o.String(), e.String(), err
}

// csrFiles is a fresh key pair and its CSR, both made by openssl.
type csrFiles struct {
	key, csr string
	// spki is the public key as openssl exports it (DER SubjectPublicKeyInfo).
	spki []byte
}

// opensslCSR makes a P-256 key with openssl (ecparam or genpkey) and a DER
// CSR for it, and exports its public key.
func opensslCSR(t *testing.T, genpkey bool) csrFiles {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		missing(t, "openssl", err)
	}
	dir := t.TempDir()
	f := csrFiles{key: filepath.Join(dir, "key.pem"), csr: filepath.Join(dir, "csr.der")}
	pub := filepath.Join(dir, "pub.der")
	gen := []string{"ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f.key}
	if genpkey {
		gen = []string{"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f.key}
	}
	for _, args := range [][]string{
		gen,
		{"req", "-new", "-key", f.key, "-subj", "/CN=whatever", "-outform", "DER", "-out", f.csr},
		{"pkey", "-in", f.key, "-pubout", "-outform", "DER", "-out", pub},
	} {
		if stdout, stderr, err := runPeer(path, args...); err != nil {
			t.Fatalf("openssl %s: %v\n%s%s", strings.Join(args, " "), err, stdout, stderr)
		}
	}
	if f.spki, err = os.ReadFile(pub); err != nil {
		t.Fatal(err)
	}
	return f
}
