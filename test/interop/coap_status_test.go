package interop

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
)

// statusDoc is the status document as the test reads it, independently
// of the server's type.
type statusDoc struct {
	Generation uint64 `cbor:"generation"`
	Rotate     bool   `cbor:"rotate"`
	Campaign   string `cbor:"campaign"`
	Applied    uint64 `cbor:"applied"`
	RenewFrom  int64  `cbor:"renew_from"`
	NotAfter   int64  `cbor:"not_after"`
}

// observeRun is coap-client observing a resource in the background.
type observeRun struct {
	cmd  *exec.Cmd
	args []string
	out  string // -o file: every payload received, one after another
	// first is closed at the first 2.05 answer in the PDU trace.
	first chan struct{}
	mu    sync.Mutex
	lines []string
	wait  chan error
	errb  bytes.Buffer
}

// observe starts coap-client -s seconds -m get on uri with the device's
// certificate and key, verifying the server with Embark's root. It runs
// under coreutils' stdbuf, line-buffered, so that its trace can be
// followed while it observes.
func (c libcoap) observe(t *testing.T, uri, cert, key, ca string, seconds int) *observeRun {
	t.Helper()
	stdbuf, err := exec.LookPath("stdbuf")
	if err != nil {
		missing(t, "stdbuf (coreutils)", err)
	}
	r := &observeRun{out: filepath.Join(t.TempDir(), "payloads"), first: make(chan struct{}), wait: make(chan error, 1)}
	r.args = []string{c.name, "-v", "6", "-B", strconv.Itoa(seconds + 10), "-s", strconv.Itoa(seconds), "-m", "get",
		"-c", cert, "-j", key, "-C", ca, "-o", r.out, uri}
	ctx, cancel := context.WithTimeout(context.Background(), peerTimeout)
	t.Cleanup(cancel)
	r.cmd = exec.CommandContext(ctx, stdbuf, append([]string{"-oL", "-eL", c.path}, r.args[1:]...)...)
	r.cmd.WaitDelay = 5 * time.Second
	r.cmd.Stderr = &r.errb
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		var once sync.Once
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			r.mu.Lock()
			r.lines = append(r.lines, line)
			r.mu.Unlock()
			if m := pduCode.FindStringSubmatch(line); m != nil && m[1] == "2.05" {
				once.Do(func() { close(r.first) })
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		r.wait <- r.cmd.Wait()
	}()
	return r
}

func (r *observeRun) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "$ " + strings.Join(r.args, " ") + "\n--- stdout:\n" + strings.Join(r.lines, "\n") + "\n--- stderr:\n" + r.errb.String()
}

// notifications returns the Observe values of the 2.05 answers in the
// trace, in order (-1 for an answer without Observe).
func (r *observeRun) notifications() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []int
	for _, line := range r.lines {
		m := pduCode.FindStringSubmatch(line)
		if m == nil || m[1] != "2.05" {
			continue
		}
		head, _, _ := strings.Cut(line, "::")
		v := -1
		if _, rest, ok := strings.Cut(head, "Observe:"); ok {
			digits := strings.TrimLeft(rest, " ")
			end := strings.IndexFunc(digits, func(c rune) bool { return c < '0' || c > '9' })
			if end < 0 {
				end = len(digits)
			}
			if n, err := strconv.Atoi(digits[:end]); err == nil {
				v = n
			}
		}
		out = append(out, v)
	}
	return out
}

// TestObserveStatus: libcoap's coap-client enrolls a device, then observes
// /embark/status with the device's LDevID (RFC 7641, -s): it gets the
// current document, and a notification when an operator asks the device
// to rotate.
func TestObserveStatus(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 2)
	e.trust(t, acme, true)
	e.importManifest(t, acme)

	for _, name := range clientNames {
		t.Run(name, func(t *testing.T) {
			c := lookClient(t, name)
			dev := deviceFiles(t, acme.take(t), false)
			csr := opensslCSR(t, false)
			r := c.do(t, request{method: "post", uri: e.coaps("/.well-known/est/sen"), format: "286", accept: "287",
				body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root})
			if r.Code != "2.04" {
				t.Fatalf("enroll: got code %q, want 2.04\n%s", r.Code, r)
			}
			ldevid := issuedCert(t, "287", r.Payload)
			certFile := filepath.Join(t.TempDir(), "ldevid.pem")
			if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ldevid.Raw}), 0o600); err != nil {
				t.Fatal(err)
			}

			obs := c.observe(t, e.coaps("/embark/status"), certFile, csr.key, e.root, 4)
			select {
			case <-obs.first:
			case err := <-obs.wait:
				t.Fatalf("coap-client ended before any answer: %v\n%s", err, obs)
			case <-time.After(peerTimeout):
				t.Fatalf("no answer\n%s", obs)
			}
			// An operator asks the device to rotate while it observes.
			id := device.ID("acme", dev.serial)
			body, _ := json.Marshal(admin.RotateRequest{Campaign: "interop"})
			var d desired.Desired
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := e.client.Do(ctx, http.MethodPost, "/v1/devices/"+id+"/rotate", body, &d); err != nil {
				t.Fatal(err)
			}
			if err := <-obs.wait; err != nil {
				var exit *exec.ExitError
				if !errors.As(err, &exit) {
					t.Fatalf("coap-client: %v\n%s", err, obs)
				}
			}
			seqs := obs.notifications()
			if len(seqs) < 2 || seqs[0] < 0 || seqs[1] <= seqs[0] {
				t.Fatalf("2.05 answers with Observe %v, want the registration and a notification with a higher Observe\n%s", seqs, obs)
			}
			t.Logf("%s: registered with Observe %d, notified %v", name, seqs[0], seqs[1:])
			payloads, err := os.ReadFile(obs.out)
			if err != nil {
				t.Fatalf("%v\n%s", err, obs)
			}
			var docs []statusDoc
			dec := cbor.NewDecoder(bytes.NewReader(payloads))
			for {
				var doc statusDoc
				if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatalf("payloads %x: %v\n%s", payloads, err, obs)
				}
				docs = append(docs, doc)
			}
			want := []statusDoc{
				{RenewFrom: docs[0].RenewFrom, NotAfter: ldevid.NotAfter.Unix()},
				{Generation: d.Generation, Rotate: true, Campaign: "interop", RenewFrom: docs[0].RenewFrom, NotAfter: ldevid.NotAfter.Unix()},
			}
			if len(docs) < 2 || docs[0] != want[0] || docs[len(docs)-1] != want[1] || docs[0].RenewFrom <= ldevid.NotBefore.Unix() {
				t.Fatalf("documents %+v, want %+v\n%s", docs, want, obs)
			}
		})
	}
}
