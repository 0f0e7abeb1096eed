package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	c := DefaultConfig(dir)
	c.CoAP.UDP = "127.0.0.1:0"
	c.Enrollment.LDevIDLifetime = Duration(48 * time.Hour)
	if err := Write(c); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(Path(dir))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode = %v, %v", st.Mode(), err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got.CoAP.UDP != "127.0.0.1:0" || got.Enrollment.LDevIDLifetime != Duration(48*time.Hour) || got.DataDir != dir {
		t.Fatalf("loaded %+v", got)
	}
}

func TestLoadRefuses(t *testing.T) {
	tests := []struct {
		name, file, want string
	}{
		{"fail/unknown-field", `{"coap":{"udpp":"x"}}`, "unknown field"},
		{"fail/bad-duration", `{"enrollment":{"ldevid_lifetime":"forever"}}`, "forever"},
		{"fail/short-lifetime", `{"enrollment":{"ldevid_lifetime":"1m"}}`, "shorter than 1h"},
		{"fail/bad-address", `{"coap":{"udp":"nohostport"}}`, "coap.udp"},
		{"fail/no-listener", `{"coap":{"udp":"","tcp":""}}`, "no listener"},
		{"fail/log-level", `{"log_level":"loud"}`, "log_level"},
		{"fail/not-json", `coap = 1`, "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(Path(dir), []byte(tt.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
	t.Run("ok/partial-file-keeps-defaults", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(Path(dir), []byte(`{"log_level":"debug"}`), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(dir)
		if err != nil || c.LogLevel != "debug" || c.CoAP.UDP != "127.0.0.1:5684" {
			t.Fatalf("c = %+v, err = %v", c, err)
		}
	})
}
