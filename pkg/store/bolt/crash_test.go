package bolt

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// crashEnv names the registry a child process writes to until it is killed.
const crashEnv = "EMBARK_BOLT_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		os.Exit(crashChild(path))
	}
	os.Exit(m.Run())
}

func crashDeviceID(i int64) string { return device.ID("acme", fmt.Sprintf("C-%08d", i)) }

// crashChild writes from 16 goroutines and prints "ok N" for every Update
// that returned nil, until it is killed or its stdin is closed.
func crashChild(path string) int {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(3) // the parent went away
	}()
	w := newFleetWriter()
	var (
		next atomic.Int64
		mu   sync.Mutex
		out  = bufio.NewWriter(os.Stdout)
	)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				id := crashDeviceID(i)
				c := w.cert(id, device.KindEnroll, fleetNow)
				err := s.Update(context.Background(), func(tx store.Tx) error {
					d := device.Device{ID: id, State: device.Onboarded, Current: c.Serial, UpdatedAt: fleetNow}
					if err := tx.PutDevice(&d); err != nil {
						return err
					}
					if err := tx.PutCertificate(c); err != nil {
						return err
					}
					_, err := tx.AppendAudit(fleetEntry("enroll", id, c.Serial))
					return err
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Fprintf(out, "ok %d\n", i)
				_ = out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return 0
}

// TestCrashKeepsAcknowledgedUpdates kills a writing process with SIGKILL and
// checks that the file is consistent and holds every Update the process saw
// succeed, with its certificate and audit entry.
func TestCrashKeepsAcknowledgedUpdates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "registry.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []int64
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		n, err := strconv.ParseInt(strings.TrimPrefix(sc.Text(), "ok "), 10, 64)
		if err != nil {
			t.Fatalf("child said %q", sc.Text())
		}
		acked = append(acked, n)
		if len(acked) == 500 {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := cmd.Wait(); err == nil || len(acked) < 500 {
		t.Fatalf("child ended with %v after %d updates; stderr: %s", err, len(acked), stderr.String())
	}

	s := openTestDBAt(t, path) // its cleanup runs bbolt's consistency check
	err = s.View(t.Context(), func(r store.Reader) error {
		for _, i := range acked {
			d, err := r.Device(crashDeviceID(i))
			if err != nil {
				return fmt.Errorf("acknowledged update %d: %w", i, err)
			}
			if _, err := r.Certificate(d.Current); err != nil {
				return fmt.Errorf("acknowledged update %d: %w", i, err)
			}
		}
		var es []audit.Entry
		if err := r.Audit(0, func(e audit.Entry) (bool, error) {
			es = append(es, e)
			return true, nil
		}); err != nil {
			return err
		}
		if len(es) < len(acked) {
			return fmt.Errorf("%d audit entries for %d acknowledged updates", len(es), len(acked))
		}
		return audit.VerifyChain(audit.Entry{}, es)
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Devices != st.Certificates || st.Devices != st.AuditEntries {
		t.Fatalf("Stats after the crash = %+v: a partial update survived", st)
	}
	t.Logf("killed after %d acknowledged updates; %d committed", len(acked), st.Devices)
}
