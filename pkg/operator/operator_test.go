package operator

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

var t0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

func clock() time.Time { return t0 }

func testCA(t testing.TB) (*CA, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "operators")
	ca, err := Init(dir, WithClock(clock))
	if err != nil {
		t.Fatal(err)
	}
	return ca, dir
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestRoles(t *testing.T) {
	tests := []struct {
		name    string
		role    string
		want    Role
		wantErr error
	}{
		{"ok/admin", "admin", RoleAdmin, nil},
		{"ok/operator", "operator", RoleOperator, nil},
		{"ok/auditor", "auditor", RoleAuditor, nil},
		{"fail/empty", "", RoleNone, ErrRole},
		{"fail/capitalised", "Admin", RoleNone, ErrRole},
		{"fail/none", "none", RoleNone, ErrRole},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRole(tt.role)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("ParseRole(%q) = %v, %v; want %v, %v", tt.role, got, err, tt.want, tt.wantErr)
			}
			if err == nil && got.String() != tt.role {
				t.Fatalf("String() = %q", got.String())
			}
		})
	}
	allows := []struct {
		r, min Role
		want   bool
	}{
		{RoleAdmin, RoleAdmin, true}, {RoleAdmin, RoleOperator, true}, {RoleAdmin, RoleAuditor, true},
		{RoleOperator, RoleAdmin, false}, {RoleOperator, RoleOperator, true}, {RoleOperator, RoleAuditor, true},
		{RoleAuditor, RoleAdmin, false}, {RoleAuditor, RoleOperator, false}, {RoleAuditor, RoleAuditor, true},
		{RoleNone, RoleAuditor, false}, {RoleAdmin, RoleNone, false}, {Role(9), RoleAuditor, false},
	}
	for _, a := range allows {
		if got := a.r.Allows(a.min); got != a.want {
			t.Errorf("%v.Allows(%v) = %v, want %v", a.r, a.min, got, a.want)
		}
	}
	b, err := json.Marshal(struct{ R Role }{RoleOperator})
	if err != nil || string(b) != `{"R":"operator"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var back struct{ R Role }
	if err := json.Unmarshal([]byte(`{"R":"root"}`), &back); !errors.Is(err, ErrRole) {
		t.Fatalf("unmarshal of an unknown role: %v, want ErrRole", err)
	}
}

func TestCheckName(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"ok/simple", "alice", true},
		{"ok/dots-digits", "ops.team-2_a", true},
		{"ok/63-chars", "a23456789012345678901234567890123456789012345678901234567890123", true},
		{"fail/empty", "", false},
		{"fail/64-chars", "a234567890123456789012345678901234567890123456789012345678901234", false},
		{"fail/upper", "Alice", false},
		{"fail/colon", "a:b", false},
		{"fail/slash", "../etc", false},
		{"fail/leading-dot", ".hidden", false},
		{"fail/space", "a b", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName(tt.in)
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, ErrName)) {
				t.Fatalf("CheckName(%q) = %v", tt.in, err)
			}
		})
	}
}

func TestInitAndLoad(t *testing.T) {
	ca, dir := testCA(t)
	fi, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v, want mode 0600", fi.Mode(), err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("directory: %v %v, want 0700", di.Mode(), err)
	}
	root := ca.Root()
	if !root.IsCA || root.Subject.CommonName != "Embark Operator CA" || root.PublicKeyAlgorithm != x509.ECDSA {
		t.Fatalf("root: %+v", root.Subject)
	}
	again, err := Init(dir)
	if err != nil || !again.Root().Equal(root) {
		t.Fatalf("Init again: %v, same root %v", err, err == nil && again.Root().Equal(root))
	}

	tests := []struct {
		name    string
		prepare func(t *testing.T, dir string)
		wantErr error
	}{
		{"fail/empty-directory", func(t *testing.T, dir string) {}, ErrNoCA},
		{"fail/key-readable-by-others", func(t *testing.T, dir string) {
			copyCA(t, dir)
			if err := os.Chmod(filepath.Join(dir, CAKeyFile), 0o644); err != nil {
				t.Fatal(err)
			}
		}, ErrKey},
		{"fail/key-missing", func(t *testing.T, dir string) {
			copyCA(t, dir)
			os.Remove(filepath.Join(dir, CAKeyFile))
		}, ErrIncompleteCA},
		{"fail/certificate-missing", func(t *testing.T, dir string) {
			copyCA(t, dir)
			os.Remove(filepath.Join(dir, CACertFile))
		}, ErrIncompleteCA},
		{"fail/key-of-another-ca", func(t *testing.T, d string) {
			copyCA(t, d)
			_, other := testCA(t)
			b, err := os.ReadFile(filepath.Join(other, CAKeyFile))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, CAKeyFile), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}, ErrBadCA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := t.TempDir()
			tt.prepare(t, d)
			before := listDir(t, d)
			_, err := Load(d)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Load: %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != ErrNoCA {
				// Init must not repair or replace anything either.
				if _, err := Init(d); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Init: %v, want %v", err, tt.wantErr)
				}
				if after := listDir(t, d); after != before {
					t.Fatalf("directory changed: %s -> %s", before, after)
				}
			}
		})
	}
}

// copyCA writes a fresh operator CA's files into dir.
func copyCA(t *testing.T, dir string) {
	t.Helper()
	_, src := testCA(t)
	for _, f := range []string{CACertFile, CAKeyFile} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func listDir(t *testing.T, dir string) string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := ""
	for _, e := range es {
		fi, _ := e.Info()
		s += e.Name() + ":" + fi.Mode().String() + ";"
	}
	return s
}

func TestIssue(t *testing.T) {
	ca, _ := testCA(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		opName   string
		role     Role
		pub      crypto.PublicKey
		lifetime time.Duration
		wantErr  error
	}{
		{"ok/p256-admin", "alice", RoleAdmin, &p256(t).PublicKey, DefaultLifetime, nil},
		{"ok/ed25519-auditor", "carol", RoleAuditor, edPub, 24 * time.Hour, nil},
		{"fail/bad-name", "Alice", RoleAdmin, &p256(t).PublicKey, DefaultLifetime, ErrName},
		{"fail/no-role", "bob", RoleNone, &p256(t).PublicKey, DefaultLifetime, ErrRole},
		{"fail/rsa-key", "bob", RoleOperator, &rsaKey.PublicKey, DefaultLifetime, ErrKey},
		{"fail/p224-key", "bob", RoleOperator, &p224.PublicKey, DefaultLifetime, ErrKey},
		{"fail/too-short", "bob", RoleOperator, &p256(t).PublicKey, time.Minute, ErrLifetime},
		{"fail/too-long", "bob", RoleOperator, &p256(t).PublicKey, MaxLifetime + time.Hour, ErrLifetime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.Issue(tt.opName, tt.role, tt.pub, tt.lifetime)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Issue: %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			id, err := ca.Verify(c)
			if err != nil {
				t.Fatal(err)
			}
			if id.Name != tt.opName || id.Role != tt.role || id.Serial != SerialOf(c) {
				t.Fatalf("identity %+v", id)
			}
			if len(c.URIs) != 1 || c.URIs[0].String() != URNPrefix+tt.role.String()+":"+tt.opName {
				t.Fatalf("URIs %v", c.URIs)
			}
			if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || c.IsCA {
				t.Fatalf("usage %v, CA %v", c.ExtKeyUsage, c.IsCA)
			}
			if !c.NotAfter.Equal(t0.Add(tt.lifetime).Truncate(time.Second)) {
				t.Fatalf("not after %s", c.NotAfter)
			}
		})
	}
}

// foreignCert makes a certificate with the given URIs, signed by its own
// self-signed issuer (not the operator CA) unless signer is given.
func foreignCert(t *testing.T, uris []string, parent *x509.Certificate, signer crypto.Signer) *x509.Certificate {
	t.Helper()
	k := p256(t)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: "x"},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	if parent == nil {
		parent, signer = tmpl, k
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIdentityOf(t *testing.T) {
	ca, _ := testCA(t)
	tests := []struct {
		name    string
		uris    []string
		want    Identity
		wantErr error
	}{
		{"ok/one-operator-uri", []string{"urn:embark:operator:operator:bob"}, Identity{Name: "bob", Role: RoleOperator, Serial: "2a"}, nil},
		{"ok/with-other-uris", []string{"https://example.com", "urn:embark:operator:auditor:carol"}, Identity{Name: "carol", Role: RoleAuditor, Serial: "2a"}, nil},
		{"fail/device-urn", []string{"urn:dev:embark:acme:ACME-1"}, Identity{}, ErrNotOperator},
		{"fail/no-uri", nil, Identity{}, ErrNotOperator},
		{"fail/two-operator-uris", []string{"urn:embark:operator:auditor:carol", "urn:embark:operator:admin:carol"}, Identity{}, ErrNotOperator},
		{"fail/unknown-role", []string{"urn:embark:operator:root:carol"}, Identity{}, ErrRole},
		{"fail/bad-name", []string{"urn:embark:operator:admin:Carol"}, Identity{}, ErrName},
		{"fail/no-name", []string{"urn:embark:operator:admin"}, Identity{}, ErrNotOperator},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := foreignCert(t, tt.uris, nil, nil)
			got, err := IdentityOf(c)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("IdentityOf = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
			// None of these was issued by the operator CA.
			if _, err := ca.Verify(c); !errors.Is(err, ErrNotOperator) {
				t.Fatalf("Verify of a foreign certificate: %v, want ErrNotOperator", err)
			}
		})
	}
}

func openStore(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func check(st store.Store, id Identity) error {
	return st.View(context.Background(), func(rd store.Reader) error { return Check(rd, id) })
}

func auditTail(t *testing.T, st store.Store) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	if err := st.View(context.Background(), func(rd store.Reader) error {
		return rd.Audit(0, func(e audit.Entry) (bool, error) { out = append(out, e); return true, nil })
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRegistry(t *testing.T) {
	ctx := context.Background()
	ca, _ := testCA(t)
	st := openStore(t)
	issue := func(name string, role Role) (Record, Identity) {
		c, err := ca.Issue(name, role, &p256(t).PublicKey, DefaultLifetime)
		if err != nil {
			t.Fatal(err)
		}
		id, err := IdentityOf(c)
		if err != nil {
			t.Fatal(err)
		}
		return Record{Name: name, Role: role, Serial: id.Serial, NotAfter: c.NotAfter, Added: t0, AddedBy: "operator:root"}, id
	}
	alice, aliceID := issue("alice", RoleAdmin)
	if err := check(st, aliceID); !errors.Is(err, ErrUnknown) {
		t.Fatalf("before Add: %v, want ErrUnknown", err)
	}
	if err := Add(ctx, st, alice, "operator:root"); err != nil {
		t.Fatal(err)
	}
	if err := check(st, aliceID); err != nil {
		t.Fatalf("after Add: %v", err)
	}

	// A second certificate for the same name is refused, and not usable.
	alice2, alice2ID := issue("alice", RoleAdmin)
	statsBefore, _ := st.Stats(ctx)
	if err := Add(ctx, st, alice2, "operator:root"); !errors.Is(err, ErrExists) {
		t.Fatalf("second Add: %v, want ErrExists", err)
	}
	if statsAfter, _ := st.Stats(ctx); statsAfter.AuditEntries != statsBefore.AuditEntries {
		t.Fatal("a refused Add wrote an audit entry")
	}
	if err := check(st, alice2ID); !errors.Is(err, ErrUnknown) {
		t.Fatalf("unregistered second certificate: %v, want ErrUnknown", err)
	}
	// A certificate claiming another role than the registered one.
	if err := check(st, Identity{Name: "alice", Role: RoleAuditor, Serial: aliceID.Serial}); !errors.Is(err, ErrUnknown) {
		t.Fatalf("role mismatch: %v, want ErrUnknown", err)
	}

	if _, err := Remove(ctx, st, "nobody", "operator:root", "", t0); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Remove of an unknown name: %v", err)
	}
	rm, err := Remove(ctx, st, "alice", "operator:root", "left the team", t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if rm.Serial != aliceID.Serial || rm.Reason != "left the team" || rm.RemovedBy != "operator:root" {
		t.Fatalf("removal %+v", rm)
	}
	if err := check(st, aliceID); !errors.Is(err, ErrRemoved) {
		t.Fatalf("removed: %v, want ErrRemoved", err)
	}
	// The removed serial can never be registered again; a new certificate can.
	if err := Add(ctx, st, alice, "operator:root"); !errors.Is(err, ErrRemoved) {
		t.Fatalf("re-adding a removed certificate: %v, want ErrRemoved", err)
	}
	if err := Add(ctx, st, alice2, "operator:root"); err != nil {
		t.Fatal(err)
	}
	if err := check(st, alice2ID); err != nil {
		t.Fatal(err)
	}
	if err := check(st, aliceID); !errors.Is(err, ErrRemoved) {
		t.Fatalf("old certificate after re-adding the name: %v, want ErrRemoved", err)
	}

	var recs []Record
	var removed []Removal
	if err := st.View(ctx, func(rd store.Reader) error {
		var err error
		recs, removed, err = List(rd)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Serial != alice2ID.Serial || len(removed) != 1 || removed[0].Serial != aliceID.Serial {
		t.Fatalf("List: %+v %+v", recs, removed)
	}
	var actions []string
	for _, e := range auditTail(t, st) {
		actions = append(actions, e.Action+"/"+e.Actor+"/"+e.Cert)
	}
	want := []string{
		"operator-add/operator:root/" + aliceID.Serial,
		"operator-remove/operator:root/" + aliceID.Serial,
		"operator-add/operator:root/" + alice2ID.Serial,
	}
	if len(actions) != len(want) {
		t.Fatalf("audit %v, want %v", actions, want)
	}
	for i := range want {
		if actions[i] != want[i] {
			t.Fatalf("audit %v, want %v", actions, want)
		}
	}
}

func TestRemovePrunesExpired(t *testing.T) {
	ctx := context.Background()
	ca, _ := testCA(t)
	st := openStore(t)
	for n, life := range map[string]time.Duration{"old": 24 * time.Hour, "new": 96 * time.Hour} {
		c, err := ca.Issue(n, RoleAuditor, &p256(t).PublicKey, life)
		if err != nil {
			t.Fatal(err)
		}
		if err := Add(ctx, st, Record{Name: n, Role: RoleAuditor, Serial: SerialOf(c), NotAfter: c.NotAfter, Added: t0}, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Remove(ctx, st, "old", "x", "", t0); err != nil {
		t.Fatal(err)
	}
	// Two days later the first removed certificate has expired: the next
	// removal drops it from the deny list.
	if _, err := Remove(ctx, st, "new", "x", "", t0.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var removed []Removal
	if err := st.View(ctx, func(rd store.Reader) error {
		var err error
		_, removed, err = List(rd)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0].Name != "new" {
		t.Fatalf("deny list %+v, want only new", removed)
	}
}
