package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/server"
	"github.com/embark-iot/embark/pki"
)

// TestCARollover drives ca rollover, status and retire on a data directory
// with no server running (the CLI opens it in process).
func TestCARollover(t *testing.T) {
	tmp := t.TempDir()
	data := filepath.Join(tmp, "data")
	mustRun(t, "init", "--data", data)
	caDir := filepath.Join(data, server.CADir)
	before, err := pki.Load(caDir)
	if err != nil {
		t.Fatal(err)
	}
	first := before.ActiveIssuer().ID

	out := mustRun(t, "ca", "status", "--data", data)
	if !strings.Contains(out, "1    active  0") || !strings.Contains(out, first) {
		t.Errorf("status before:\n%s", out)
	}
	out = mustRun(t, "ca", "rollover", "--data", data)
	after, err := pki.Load(caDir)
	if err != nil {
		t.Fatal(err)
	}
	second := after.ActiveIssuer()
	if second.ID == first || second.Generation != 2 || !strings.Contains(out, "intermediate "+second.ID+" issues from now on") {
		t.Fatalf("rollover:\n%s", out)
	}
	if !strings.Contains(out, "previous") || !strings.Contains(out, "Embark Intermediate CA 2") {
		t.Errorf("rollover status:\n%s", out)
	}

	fails := []struct {
		name    string
		args    []string
		code    int
		errOut  string
		stateIs string
	}{
		{"fail/retire-active", []string{"ca", "retire", second.ID}, 1, "the active one", "previous,active"},
		{"fail/retire-unknown", []string{"ca", "retire", strings.Repeat("0", 40)}, 1, "unknown intermediate", "previous,active"},
		{"fail/retire-without-id", []string{"ca", "retire"}, 2, "usage: embark ca", "previous,active"},
		{"fail/status-with-extra-arg", []string{"ca", "status", "x"}, 2, "usage: embark ca", "previous,active"},
		{"fail/root-flag-on-status", []string{"ca", "status", "--root"}, 2, "ca status does not take --root", "previous,active"},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			state, _ := os.ReadFile(filepath.Join(caDir, pki.StateFile))
			r := runCLI(t, append(tc.args, "--data", data)...)
			if r.code != tc.code || !strings.Contains(r.errOut, tc.errOut) {
				t.Fatalf("%v", r)
			}
			if now, _ := os.ReadFile(filepath.Join(caDir, pki.StateFile)); string(now) != string(state) {
				t.Fatal("the CA state changed")
			}
		})
	}

	t.Run("ok/retire-previous", func(t *testing.T) {
		out := mustRun(t, "ca", "retire", first[:12], "--data", data)
		if !strings.Contains(out, "retired") {
			t.Fatalf("retire:\n%s", out)
		}
		re, err := pki.Load(caDir)
		if err != nil {
			t.Fatal(err)
		}
		if is, err := re.Issuer(first); err != nil || is.State != pki.IssuerRetired {
			t.Fatalf("%+v %v", is, err)
		}
	})
	t.Run("ok/rollover-with-new-root", func(t *testing.T) {
		mustRun(t, "ca", "rollover", "--root", "--data", data)
		re, err := pki.Load(caDir)
		if err != nil {
			t.Fatal(err)
		}
		if re.Root().Equal(before.Root()) || !re.ActiveIssuer().Bridged {
			t.Fatal("no new, bridged root")
		}
	})
}
