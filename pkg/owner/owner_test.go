package owner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestInitLoad(t *testing.T) {
	dir := t.TempDir()
	a, err := Init(dir, "op")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Init(dir, "op")
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != b.KeyID() {
		t.Fatal("second Init made a new key")
	}
	st, _ := os.Stat(filepath.Join(dir, KeyFile))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key mode %v", st.Mode().Perm())
	}
	tests := []struct {
		name, owner, key string
		want             bool
	}{
		{"ok/by-name", "op", "", true},
		{"ok/by-key", "someone-else", a.KeyID(), true},
		{"fail/other-name", "other", "", false},
		{"fail/other-key-same-name", "op", strings.Repeat("ab", 32), false},
		{"fail/nothing", "", "", false},
	}
	for _, tt := range tests {
		if got := a.Owns(tt.owner, tt.key); got != tt.want {
			t.Errorf("%s: Owns(%q, %q) = %v", tt.name, tt.owner, tt.key, got)
		}
	}
	if err := os.Chmod(filepath.Join(dir, KeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir, "op"); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("world-readable key: %v", err)
	}
}
