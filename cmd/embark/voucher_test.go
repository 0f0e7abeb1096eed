package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/firmware-sim/masa"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/voucher"
)

// TestVoucherCLI: setting a manufacturer's MASA registers the domain (over
// TLS 1.3 X25519MLKEM768) and shows the setting; prefetch writes nonceless
// vouchers where an Embark serves them from.
func TestVoucherCLI(t *testing.T) {
	t.Setenv("USER", "tester")
	data := filepath.Join(t.TempDir(), "data")
	mustRun(t, "init", "--data", data)
	pubPEM, err := os.ReadFile(filepath.Join(data, "owner.pub"))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := hybridsig.ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	fdir := filepath.Join(t.TempDir(), "factory")
	if _, err := factory.Run(context.Background(), factory.Options{Out: fdir, Count: 3, OwnerKey: pub.KeyID()}); err != nil {
		t.Fatal(err)
	}
	m, err := masa.New(masa.Options{FactoryDir: fdir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mustRun(t, "manufacturer", "trust", filepath.Join(fdir, "trust.json"), "--data", data)
	mustRun(t, "provenance", "import", filepath.Join(fdir, "manifest.json"), "--data", data)

	tests := []struct {
		name    string
		args    []string
		code    int
		out     string
		errOut  string
		prepare func(t *testing.T)
	}{
		{name: "fail/no MASA set yet", args: []string{"manufacturer", "masa", "acme"}, code: 1, errOut: "no MASA configured"},
		{name: "fail/not https", args: []string{"manufacturer", "masa", "acme", "http://" + strings.TrimPrefix(m.URL(), "https://")}, code: 1,
			errOut: "want https://host[:port]"},
		{name: "fail/untrusted manufacturer", args: []string{"manufacturer", "masa", "globex", m.URL()}, code: 1, errOut: "not trusted"},
		{name: "ok/set", args: []string{"manufacturer", "masa", "acme", m.URL()}, out: "link          TLS1.3 X25519MLKEM768"},
		{name: "ok/show", args: []string{"manufacturer", "masa", "acme"}, out: "devices       3 sold to this owner"},
		{name: "fail/prefetch without --out", args: []string{"voucher", "prefetch", "--all-held"}, code: 2, errOut: "usage: embark voucher"},
		{name: "fail/prefetch with both selections", args: []string{"voucher", "prefetch", "--all-held", "--serials", "x", "--out", "d"}, code: 2,
			errOut: "usage: embark voucher"},
		{name: "ok/prefetch", args: []string{"voucher", "prefetch", "--all-held", "--lifetime", "48h", "--out", filepath.Join(data, "vouchers")},
			out: "wrote 3 nonceless vouchers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCLI(t, append(tt.args, "--data", data)...)
			if r.code != tt.code || !strings.Contains(r.out, tt.out) || !strings.Contains(r.errOut, tt.errOut) {
				t.Fatalf("%v\nwant exit %d, stdout %q, stderr %q", r, tt.code, tt.out, tt.errOut)
			}
		})
	}
	fw, err := factory.ReadFirmware(fdir)
	if err != nil {
		t.Fatal(err)
	}
	for _, serial := range []string{"ACME-000001", "ACME-000002", "ACME-000003"} {
		b, err := os.ReadFile(filepath.Join(data, "vouchers", "acme", serial+".voucher"))
		if err != nil {
			t.Fatal(err)
		}
		v, err := voucher.Verify(b, voucher.VerifyOptions{Anchors: fw.VoucherAnchors, Serial: serial, Now: time.Now, AllowNonceless: true})
		if err != nil {
			t.Fatalf("%s: %v", serial, err)
		}
		if d := time.Until(v.ExpiresOn); d < 47*time.Hour || d > 49*time.Hour {
			t.Fatalf("%s expires in %s, want about 48h", serial, d)
		}
	}
}
