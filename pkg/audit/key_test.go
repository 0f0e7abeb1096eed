package audit

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadKey(dir); !errors.Is(err, ErrNoKey) {
		t.Fatalf("fail/no key: %v", err)
	}
	a, err := InitKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := InitKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Public().Equal(b.Public()) {
		t.Fatal("a second InitKey made a new key")
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	pub, err := LoadPublicKey(filepath.Join(dir, PublicKeyFile))
	if err != nil || !pub.Equal(a.Public()) {
		t.Fatalf("public key file: %v", err)
	}

	// A lost public key file is written again.
	if err := os.Remove(filepath.Join(dir, PublicKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := InitKey(dir); err != nil {
		t.Fatal(err)
	}
	if pub, err := LoadPublicKey(filepath.Join(dir, PublicKeyFile)); err != nil || !pub.Equal(a.Public()) {
		t.Fatalf("rewritten public key: %v", err)
	}

	// A public key file of another key is refused, and left alone.
	other := t.TempDir()
	if _, err := InitKey(other); err != nil {
		t.Fatal(err)
	}
	foreign, _ := os.ReadFile(filepath.Join(other, PublicKeyFile))
	if err := os.WriteFile(filepath.Join(dir, PublicKeyFile), foreign, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := InitKey(dir); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("fail/foreign public key: %v", err)
	}
	if now, _ := os.ReadFile(filepath.Join(dir, PublicKeyFile)); string(now) != string(foreign) {
		t.Fatal("foreign public key file replaced")
	}

	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(dir); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("fail/group-readable key: %v", err)
	}
}
