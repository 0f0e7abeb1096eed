package cabackup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestKeyFiles(t *testing.T) {
	base := filepath.Join(t.TempDir(), "offsite")
	k, err := WriteKeyPair(base)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(base + ".key")
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	pub, err := ReadPublicKey(base + ".pub")
	if err != nil || pub.KeyID() != k.Public().KeyID() || len(pub.Bytes()) != 1216 {
		t.Fatalf("public key: %v", err)
	}
	priv, err := ReadPrivateKey(base + ".key")
	if err != nil || priv.Public().KeyID() != k.Public().KeyID() {
		t.Fatalf("private key: %v", err)
	}
	before, _ := os.ReadFile(base + ".key")
	if _, err := WriteKeyPair(base); !errors.Is(err, ErrExists) {
		t.Fatalf("fail/second key pair: %v", err)
	}
	if after, _ := os.ReadFile(base + ".key"); string(after) != string(before) {
		t.Fatal("key overwritten")
	}

	pubPEM, _ := os.ReadFile(base + ".pub")
	privPEM, _ := os.ReadFile(base + ".key")
	tests := []struct {
		name string
		in   string
		priv bool
		want error
	}{
		{"fail/private key as public", string(privPEM), false, ErrMalformed},
		{"fail/public key as private", string(pubPEM), true, ErrMalformed},
		{"fail/other KEM", strings.Replace(string(pubPEM), kemName, "DHKEM(X25519)", 1), false, ErrUnsupported},
		{"fail/trailing data", string(pubPEM) + "x", false, ErrMalformed},
		{"fail/no PEM", "hello", false, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.priv {
				_, err = ParsePrivateKeyPEM([]byte(tt.in))
			} else {
				_, err = ParsePublicKeyPEM([]byte(tt.in))
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}

	if err := os.Chmod(base+".key", 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPrivateKey(base + ".key"); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("fail/readable key: %v", err)
	}
}
