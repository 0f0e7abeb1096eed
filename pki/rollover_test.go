package pki

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// treeSnapshot records every file under dir (relative path, mode and
// content), to show that a failed call changed nothing.
func treeSnapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if d.IsDir() {
			out[rel+"/"] = fi.Mode().String()
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[rel] = fi.Mode().String() + ":" + string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func issueTo(t testing.TB, ca *CA, id string) *x509.Certificate {
	t.Helper()
	c, err := ca.IssueLDevID(LDevIDRequest{PublicKey: &p256Key(t).PublicKey, DeviceID: id, Lifetime: 24 * time.Hour})
	if err != nil {
		t.Fatalf("IssueLDevID: %v", err)
	}
	return c
}

// chainsTo checks with crypto/x509 that leaf verifies under root with the
// CA's published intermediates (bridges included).
func chainsTo(ca *CA, leaf *x509.Certificate, root *x509.Certificate, now time.Time, presented ...*x509.Certificate) error {
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range presented {
		inters.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

func states(ca *CA) string {
	var s []string
	for _, is := range ca.Issuers() {
		s = append(s, string(is.State))
	}
	return strings.Join(s, ",")
}

func TestRolloverIntermediate(t *testing.T) {
	ca, clk, dir := newTestCA(t)
	oldRoot, oldInter := ca.Root(), ca.Intermediate()
	before := issueTo(t, ca, "urn:dev:embark:acme:OLD")
	srv1, err := ca.ServerCertificate([]string{"embark.test"}, nil, 90*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	first := ca.ActiveIssuer()

	clk.Advance(time.Hour)
	is, err := ca.Rollover(RolloverOptions{})
	if err != nil {
		t.Fatalf("Rollover: %v", err)
	}
	now := clk.Now()
	after := issueTo(t, ca, "urn:dev:embark:acme:NEW")

	t.Run("ok/new-active-old-previous", func(t *testing.T) {
		if is.Generation != 2 || is.State != IssuerActive || is.Bridged || ca.ActiveIssuer().ID != is.ID {
			t.Fatalf("new issuer %+v, active %+v", is, ca.ActiveIssuer())
		}
		if got := states(ca); got != "previous,active" {
			t.Fatalf("states %s", got)
		}
		if ca.Intermediate().Equal(oldInter) || !ca.Root().Equal(oldRoot) {
			t.Fatal("active intermediate unchanged or root changed")
		}
		if is.Subject != "CN=Embark Intermediate CA 2,O=Embark" {
			t.Errorf("subject %s", is.Subject)
		}
		if is.ID != keyIDOf(ca.Intermediate()) || first.ID == is.ID {
			t.Errorf("ids %s %s", first.ID, is.ID)
		}
	})
	t.Run("ok/both-verify", func(t *testing.T) {
		for _, c := range []*x509.Certificate{before, after} {
			if err := ca.VerifyLDevID(c, now); err != nil {
				t.Errorf("%s: %v", c.Issuer, err)
			}
			if !ca.IssuedHere(c) {
				t.Errorf("%s: not issued here", c.Issuer)
			}
			if err := chainsTo(ca, c, oldRoot, now, ca.Intermediates()...); err != nil {
				t.Errorf("%s: %v", c.Issuer, err)
			}
		}
		if !bytesEqual(after.AuthorityKeyId, ca.Intermediate().SubjectKeyId) {
			t.Error("new certificate not issued by the new intermediate")
		}
		if c := ca.ChainOf(before); len(c) != 2 || !c[0].Equal(oldInter) {
			t.Errorf("ChainOf(old) = %v", c)
		}
		if c := ca.ChainOf(after); len(c) != 2 || !c[0].Equal(ca.Intermediate()) {
			t.Errorf("ChainOf(new) = %v", c)
		}
		if iss, ok := ca.IssuerOf(before); !ok || iss.ID != first.ID || iss.State != IssuerPrevious {
			t.Errorf("IssuerOf(old) = %+v %v", iss, ok)
		}
	})
	t.Run("ok/published", func(t *testing.T) {
		got := ca.CACerts()
		if len(got) != 3 || !got[0].Equal(ca.Intermediate()) || !got[1].Equal(oldInter) || !got[2].Equal(oldRoot) {
			t.Fatalf("CACerts = %d certificates", len(got))
		}
		if ch := ca.Chains(); len(ch) != 2 || !ch[0][0].Equal(ca.Intermediate()) || !ch[1][0].Equal(oldInter) {
			t.Fatalf("Chains = %v", ch)
		}
		if r := ca.Roots(); len(r) != 1 || !r[0].Equal(oldRoot) {
			t.Fatalf("Roots = %v", r)
		}
	})
	t.Run("ok/server-certificate-moves", func(t *testing.T) {
		srv2, err := ca.ServerCertificate([]string{"embark.test"}, nil, 90*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if srv2.Leaf.Equal(srv1.Leaf) || srv2.Leaf.CheckSignatureFrom(ca.Intermediate()) != nil {
			t.Fatal("server certificate not reissued under the new intermediate")
		}
		if len(srv2.Certificate) != 2 || string(srv2.Certificate[1]) != string(ca.Intermediate().Raw) {
			t.Fatal("server chain does not carry the new intermediate")
		}
		again, err := ca.ServerCertificate([]string{"embark.test"}, nil, 90*24*time.Hour)
		if err != nil || !again.Leaf.Equal(srv2.Leaf) {
			t.Fatalf("stored server certificate not reused: %v", err)
		}
		r, err := ca.ResponderCertificate(&url.URL{Scheme: "urn", Opaque: "embark:responder"}, 30*24*time.Hour)
		if err != nil || r.Leaf.CheckSignatureFrom(ca.Intermediate()) != nil {
			t.Fatalf("responder: %v", err)
		}
	})
	t.Run("ok/crl-per-issuer", func(t *testing.T) {
		for _, iss := range ca.Issuers() {
			der, err := ca.CreateCRLFor(iss.ID, []x509.RevocationListEntry{{SerialNumber: before.SerialNumber, RevocationTime: now}},
				big.NewInt(1), now, now.Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			rl, err := x509.ParseRevocationList(der)
			if err != nil || rl.CheckSignatureFrom(iss.Certificate) != nil || !bytesEqual(rl.AuthorityKeyId, iss.Certificate.SubjectKeyId) {
				t.Fatalf("CRL of %s does not verify: %v", iss.ID, err)
			}
		}
	})
	t.Run("ok/reload", func(t *testing.T) {
		re, err := Load(dir, WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		if states(re) != "previous,active" || re.ActiveIssuer().ID != is.ID {
			t.Fatalf("reloaded %s, active %s", states(re), re.ActiveIssuer().ID)
		}
		for _, c := range []*x509.Certificate{before, after} {
			if err := re.VerifyLDevID(c, now); err != nil {
				t.Error(err)
			}
		}
		if c := issueTo(t, re, "urn:dev:embark:acme:X"); !bytesEqual(c.AuthorityKeyId, ca.Intermediate().SubjectKeyId) {
			t.Error("reloaded CA issues from the old intermediate")
		}
	})
	t.Run("ok/third-generation", func(t *testing.T) {
		is3, err := ca.Rollover(RolloverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if is3.Generation != 3 || states(ca) != "previous,previous,active" || is3.Subject != "CN=Embark Intermediate CA 3,O=Embark" {
			t.Fatalf("%+v %s", is3, states(ca))
		}
		for _, c := range []*x509.Certificate{before, after} {
			if err := ca.VerifyLDevID(c, now); err != nil {
				t.Error(err)
			}
		}
	})
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func TestRolloverNewRoot(t *testing.T) {
	ca, clk, dir := newTestCA(t)
	r1 := ca.Root()
	before := issueTo(t, ca, "urn:dev:embark:acme:OLD")
	is, err := ca.Rollover(RolloverOptions{NewRoot: true})
	if err != nil {
		t.Fatal(err)
	}
	r2 := ca.Root()
	now := clk.Now()
	after := issueTo(t, ca, "urn:dev:embark:acme:NEW")
	srv, err := ca.ServerCertificate(nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var presented []*x509.Certificate
	for _, der := range srv.Certificate[1:] {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		presented = append(presented, c)
	}

	t.Run("ok/new-root", func(t *testing.T) {
		if r2.Equal(r1) || !is.Bridged || is.Root != "CN=Embark Root CA 2,O=Embark" {
			t.Fatalf("%+v", is)
		}
		if r := ca.Roots(); len(r) != 2 || !r[0].Equal(r2) || !r[1].Equal(r1) {
			t.Fatalf("Roots = %v", r)
		}
		got := ca.CACerts()
		if !got[len(got)-1].Equal(r2) || !slices.ContainsFunc(got, r1.Equal) {
			t.Fatal("CACerts must hold both roots, the active one last")
		}
	})
	t.Run("ok/either-root-verifies", func(t *testing.T) {
		for _, root := range []*x509.Certificate{r1, r2} {
			if err := chainsTo(ca, after, root, now, ca.Intermediates()...); err != nil {
				t.Errorf("new LDevID under %s: %v", root.Subject.CommonName, err)
			}
			// What a device sees of Embark: the server chain alone.
			if err := chainsTo(ca, srv.Leaf, root, now, presented...); err != nil {
				t.Errorf("server certificate under %s: %v", root.Subject.CommonName, err)
			}
		}
		if err := chainsTo(ca, before, r1, now, ca.Intermediates()...); err != nil {
			t.Error(err)
		}
		// The chain a device is given with its new certificate works under
		// either root, too.
		chain := ca.ChainOf(after)
		if len(chain) != 3 || !chain[0].Equal(ca.Intermediate()) || !chain[2].Equal(r2) {
			t.Fatalf("ChainOf(new) = %d certificates, want intermediate, bridge, root", len(chain))
		}
		for _, root := range []*x509.Certificate{r1, r2} {
			if err := chainsTo(ca, after, root, now, chain...); err != nil {
				t.Errorf("new LDevID with its chain under %s: %v", root.Subject.CommonName, err)
			}
		}
		if err := ca.VerifyLDevID(before, now); err != nil {
			t.Error(err)
		}
	})
	t.Run("ok/reload-and-roll-again", func(t *testing.T) {
		re, err := Load(dir, WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		if !re.Root().Equal(r2) || !re.ActiveIssuer().Bridged {
			t.Fatal("reloaded CA lost the new root or its bridge")
		}
		// The next rollover is signed by the new root's key.
		is3, err := re.Rollover(RolloverOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if is3.Root != is.Root || is3.Bridged || re.Intermediate().CheckSignatureFrom(r2) != nil {
			t.Fatalf("%+v", is3)
		}
	})
}

func TestRolloverRefused(t *testing.T) {
	t.Run("fail/root-key-offline", func(t *testing.T) {
		ca, _, dir := newTestCA(t)
		if err := os.Remove(filepath.Join(dir, RootKeyFile)); err != nil {
			t.Fatal(err)
		}
		snap, active := treeSnapshot(t, dir), ca.ActiveIssuer().ID
		if _, err := ca.Rollover(RolloverOptions{}); !errors.Is(err, ErrRootKeyOffline) {
			t.Fatalf("Rollover = %v, want ErrRootKeyOffline", err)
		}
		if ca.ActiveIssuer().ID != active || len(ca.Issuers()) != 1 {
			t.Fatal("CA changed")
		}
		got := treeSnapshot(t, dir)
		delete(got, GenerationsDir+"/") // may be created empty
		if len(got) != len(snap) {
			t.Fatalf("directory changed: %v", got)
		}
	})
	t.Run("fail/no-directory", func(t *testing.T) {
		base, clk, _ := newTestCA(t)
		ca, err := New(base.Service(), base.Chain(), WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ca.Rollover(RolloverOptions{}); !errors.Is(err, ErrNoCADir) {
			t.Fatalf("Rollover = %v, want ErrNoCADir", err)
		}
		if _, err := ca.Retire(ca.ActiveIssuer().ID); !errors.Is(err, ErrNoCADir) {
			t.Fatalf("Retire = %v, want ErrNoCADir", err)
		}
	})
	t.Run("fail/root-ends-too-soon", func(t *testing.T) {
		ca, clk, dir := newTestCA(t)
		clk.Advance(RootLifetime - 10*24*time.Hour)
		snap := treeSnapshot(t, dir)
		if _, err := ca.Rollover(RolloverOptions{}); !errors.Is(err, ErrLifetime) {
			t.Fatalf("Rollover = %v, want ErrLifetime", err)
		}
		got := treeSnapshot(t, dir)
		delete(got, GenerationsDir+"/")
		if len(got) != len(snap) || len(ca.Issuers()) != 1 {
			t.Fatal("CA changed")
		}
	})
}

func TestRetire(t *testing.T) {
	ca, clk, dir := newTestCA(t)
	old := issueTo(t, ca, "urn:dev:embark:acme:OLD")
	first := ca.ActiveIssuer()
	if _, err := ca.Retire(first.ID); !errors.Is(err, ErrActiveIssuer) {
		t.Fatalf("Retire(active) before rollover = %v", err)
	}
	second, err := ca.Rollover(RolloverOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := clk.Now()

	fails := []struct {
		name string
		id   string
		want error
	}{
		{"fail/active", second.ID, ErrActiveIssuer},
		{"fail/unknown", strings.Repeat("0", 40), ErrUnknownIssuer},
		{"fail/short-prefix", first.ID[:4], ErrUnknownIssuer},
		{"fail/empty", "", ErrUnknownIssuer},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			snap := treeSnapshot(t, dir)
			if _, err := ca.Retire(tc.id); !errors.Is(err, tc.want) {
				t.Fatalf("Retire(%q) = %v, want %v", tc.id, err, tc.want)
			}
			if states(ca) != "previous,active" {
				t.Fatalf("states %s", states(ca))
			}
			if got := treeSnapshot(t, dir); len(got) != len(snap) || got[StateFile] != snap[StateFile] {
				t.Fatal("directory changed")
			}
		})
	}

	t.Run("ok/retire-by-prefix", func(t *testing.T) {
		is, err := ca.Retire(strings.ToUpper(first.ID[:10]))
		if err != nil {
			t.Fatal(err)
		}
		if is.ID != first.ID || is.State != IssuerRetired || !is.Retired.Equal(now.Truncate(time.Second)) {
			t.Fatalf("%+v", is)
		}
		err = ca.VerifyLDevID(old, now)
		if !errors.Is(err, ErrRetired) || !errors.Is(err, ErrNotIssuedHere) {
			t.Fatalf("VerifyLDevID(old) = %v, want ErrRetired and ErrNotIssuedHere", err)
		}
		if !ca.IssuedHere(old) {
			t.Error("a certificate of a retired intermediate must still be recognised as ours")
		}
		if _, err := ca.CreateCRLFor(first.ID, nil, big.NewInt(1), now, now.Add(time.Hour)); !errors.Is(err, ErrRetired) {
			t.Errorf("CreateCRLFor(retired) = %v", err)
		}
		if len(ca.Intermediates()) != 1 || len(ca.CACerts()) != 2 || len(ca.Chains()) != 1 {
			t.Error("a retired intermediate is still published")
		}
	})
	t.Run("ok/retire-again-changes-nothing", func(t *testing.T) {
		snap := treeSnapshot(t, dir)
		clk.Advance(time.Hour)
		is, err := ca.Retire(first.ID)
		if err != nil || is.State != IssuerRetired || !is.Retired.Equal(now.Truncate(time.Second)) {
			t.Fatalf("%+v %v", is, err)
		}
		if got := treeSnapshot(t, dir); got[StateFile] != snap[StateFile] {
			t.Fatal("state file rewritten")
		}
	})
	t.Run("ok/reload-without-retired-key", func(t *testing.T) {
		// A retired intermediate's key is not needed any more.
		if err := os.Remove(filepath.Join(dir, IntermediateKeyFile)); err != nil {
			t.Fatal(err)
		}
		re, err := Load(dir, WithClock(clk.Now))
		if err != nil {
			t.Fatal(err)
		}
		if states(re) != "retired,active" || !errors.Is(re.VerifyLDevID(old, now), ErrRetired) {
			t.Fatalf("reloaded %s", states(re))
		}
	})
}

// TestRolloverCrash stops a rollover at every step, as a crash would
// (nothing is cleaned up), then loads the directory again: before the state
// file is replaced the CA is exactly the old one and still issues; after,
// it is the new one. A later rollover succeeds either way.
func TestRolloverCrash(t *testing.T) {
	errCrash := errors.New("crash")
	for _, newRoot := range []bool{false, true} {
		var steps []string
		ca, _, _ := newTestCA(t, withFail(func(step string) error { steps = append(steps, step); return nil }))
		if _, err := ca.Rollover(RolloverOptions{NewRoot: newRoot}); err != nil {
			t.Fatal(err)
		}
		if want := 5 + 3*btoi(newRoot); len(steps) != want || steps[len(steps)-1] != "commit" {
			t.Fatalf("steps %v, want %d ending with commit", steps, want)
		}
		for _, stop := range steps {
			name := "ok/stop-at-" + strings.ReplaceAll(stop, " ", "-")
			if newRoot {
				name += "/new-root"
			}
			t.Run(name, func(t *testing.T) {
				ca, clk, dir := newTestCA(t, withFail(func(step string) error {
					if step == stop {
						return errCrash
					}
					return nil
				}))
				old := issueTo(t, ca, "urn:dev:embark:acme:OLD")
				oldID := ca.ActiveIssuer().ID
				if _, err := ca.Rollover(RolloverOptions{NewRoot: newRoot}); !errors.Is(err, errCrash) {
					t.Fatalf("Rollover = %v, want the crash", err)
				}
				if ca.ActiveIssuer().ID != oldID {
					t.Fatal("the running CA switched although the rollover failed")
				}
				re, err := Load(dir, WithClock(clk.Now))
				if err != nil {
					t.Fatalf("load after the crash: %v", err)
				}
				if err := re.VerifyLDevID(old, clk.Now()); err != nil {
					t.Fatalf("old certificate after the crash: %v", err)
				}
				committed := stop == "commit"
				switch {
				case committed && (len(re.Issuers()) != 2 || re.ActiveIssuer().ID == oldID):
					t.Fatalf("after the commit the new intermediate must be active: %s", states(re))
				case !committed && (len(re.Issuers()) != 1 || re.ActiveIssuer().ID != oldID):
					t.Fatalf("before the commit the CA must be unchanged: %s", states(re))
				}
				if c := issueTo(t, re, "urn:dev:embark:acme:AFTER"); re.VerifyLDevID(c, clk.Now()) != nil {
					t.Fatal("CA unusable after the crash")
				}
				// Roll over (again) on the reloaded CA: what the crash left
				// is cleaned up, and the result is consistent.
				is, err := re.Rollover(RolloverOptions{NewRoot: newRoot})
				if err != nil {
					t.Fatalf("rollover after the crash: %v", err)
				}
				entries, err := os.ReadDir(filepath.Join(dir, GenerationsDir))
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, e := range entries {
					names = append(names, e.Name())
				}
				want := []string{"2"}
				if committed {
					want = []string{"2", "3"}
				}
				if !slices.Equal(names, want) || is.Generation != len(want)+1 {
					t.Fatalf("generations dir %v (want %v), new generation %d", names, want, is.Generation)
				}
				if _, err := Load(dir, WithClock(clk.Now)); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func withFail(fn func(string) error) Option {
	return func(c *config) error { c.fail = fn; return nil }
}

func TestLoadStateRefused(t *testing.T) {
	edits := []struct {
		name string
		edit func(*stateFile)
	}{
		{"fail/two-active", func(sf *stateFile) { sf.Intermediates[0].State = IssuerActive }},
		{"fail/no-active", func(sf *stateFile) { sf.Intermediates[1].State = IssuerPrevious }},
		{"fail/id-mismatch", func(sf *stateFile) { sf.Intermediates[1].ID = sf.Intermediates[0].ID }},
		{"fail/dir-outside", func(sf *stateFile) { sf.Intermediates[1].Dir = "../elsewhere" }},
		{"fail/root-dir-later", func(sf *stateFile) { sf.Intermediates[0].RootDir = "generations/2" }},
		{"fail/bad-state", func(sf *stateFile) { sf.Intermediates[0].State = "sleeping" }},
		{"fail/version", func(sf *stateFile) { sf.Version = 2 }},
		{"fail/gap", func(sf *stateFile) { sf.Intermediates[1].Generation = 3 }},
	}
	for _, tc := range edits {
		t.Run(tc.name, func(t *testing.T) {
			ca, clk, dir := newTestCA(t)
			if _, err := ca.Rollover(RolloverOptions{}); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, StateFile)
			var sf stateFile
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &sf); err != nil {
				t.Fatal(err)
			}
			tc.edit(&sf)
			data, _ = json.Marshal(sf)
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(dir, WithClock(clk.Now)); !errors.Is(err, ErrState) {
				t.Fatalf("Load = %v, want ErrState", err)
			}
		})
	}
	t.Run("fail/unknown-field", func(t *testing.T) {
		_, clk, dir := newTestCA(t)
		if err := os.WriteFile(filepath.Join(dir, StateFile), []byte(`{"version":1,"intermediates":[],"x":1}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(dir, WithClock(clk.Now)); !errors.Is(err, ErrState) {
			t.Fatalf("Load = %v, want ErrState", err)
		}
	})
}

// TestRolloverWhileIssuing issues and verifies from several goroutines
// while the CA rolls over: every certificate issued verifies afterwards,
// and carries one of the two intermediates.
func TestRolloverWhileIssuing(t *testing.T) {
	ca, clk, _ := newTestCA(t)
	first := ca.ActiveIssuer().ID
	done := make(chan struct{})
	certs := make(chan *x509.Certificate, 1024)
	errs := make(chan error, 8)
	for range 4 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				c, err := ca.IssueLDevID(LDevIDRequest{PublicKey: &p256Key(t).PublicKey, DeviceID: "urn:dev:embark:acme:X", Lifetime: time.Hour})
				if err == nil {
					err = ca.VerifyLDevID(c, clk.Now())
				}
				if err != nil {
					errs <- err
					return
				}
				select {
				case certs <- c:
				default:
				}
			}
		}()
	}
	second, err := ca.Rollover(RolloverOptions{})
	close(done)
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(certs)
	for c := range certs {
		is, ok := ca.IssuerOf(c)
		if !ok || (is.ID != first && is.ID != second.ID) || ca.VerifyLDevID(c, clk.Now()) != nil {
			t.Fatalf("certificate of %v does not verify after the rollover", c.Issuer)
		}
	}
}
