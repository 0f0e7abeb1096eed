package main

import (
	"bytes"
	"context"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
	"github.com/embark-iot/embark/firmware-sim/mqttclient/mqtttest"
)

func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		out  string // expected in stdout
		err  string // expected in stderr
	}{
		{name: "ok/version", args: []string{"version"}, code: exitOK, out: "firmware-sim "},
		{name: "ok/help", args: []string{"help"}, code: exitOK, out: "usage:"},
		{name: "ok/fleet -h", args: []string{"fleet", "-h"}, code: exitOK, err: "--factory DIR"},
		{name: "fail/no command", args: nil, code: exitUsage, err: "usage:"},
		{name: "fail/unknown command", args: []string{"storm"}, code: exitUsage, err: `unknown command "storm"`},
		{name: "fail/version with an argument", args: []string{"version", "x"}, code: exitUsage, err: `unexpected argument "x"`},
		{name: "fail/factory without --out", args: []string{"factory", "--count", "3"}, code: exitUsage, err: "--out is required"},
		{name: "fail/factory with a bad manufacturer", args: []string{"factory", "--count", "1", "--out", filepath.Join(dir, "f"), "--manufacturer", "Bad Name"},
			code: exitUsage, err: "manufacturer"},
		{name: "fail/factory with more expired than devices", args: []string{"factory", "--count", "1", "--expired", "2", "--out", filepath.Join(dir, "g")},
			code: exitUsage, err: "expired"},
		{name: "fail/fleet without --factory", args: []string{"fleet", "--ca", "root.pem"}, code: exitUsage, err: "--factory is required"},
		{name: "fail/fleet over mqtt without --ca", args: []string{"fleet", "--factory", dir, "--transport", "mqtt"}, code: exitUsage, err: "zero touch"},
		{name: "fail/fleet with an unknown mode", args: []string{"fleet", "--factory", dir, "--ca", "root.pem", "--mode", "storm"},
			code: exitUsage, err: `mode "storm"`},
		{name: "fail/fleet with an unknown flag", args: []string{"fleet", "--insecure"}, code: exitUsage, err: "flag provided but not defined"},
		{name: "fail/fleet with an unknown transport", args: []string{"fleet", "--factory", dir, "--ca", "root.pem", "--transport", "http"},
			code: exitUsage, err: `transport "http"`},
		{name: "fail/fleet over mqtt with a coaps server",
			args: []string{"fleet", "--factory", dir, "--ca", "root.pem", "--transport", "mqtt", "--server", "coaps://127.0.0.1:5684"},
			code: exitUsage, err: "scheme must be mqtts"},
		{name: "fail/fleet over coap with an mqtts server",
			args: []string{"fleet", "--factory", dir, "--ca", "root.pem", "--server", "mqtts://127.0.0.1:8883"},
			code: exitUsage, err: "scheme must be coaps"},
		{name: "fail/fleet with a negative stay", args: []string{"fleet", "--factory", dir, "--ca", "root.pem", "--stay", "-1m"},
			code: exitUsage, err: "stay -1m0s < 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runCmd(tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out, errOut)
			}
			if !strings.Contains(out, tc.out) || !strings.Contains(errOut, tc.err) {
				t.Fatalf("stdout %q, stderr %q; want %q and %q in them", out, errOut, tc.out, tc.err)
			}
		})
	}
}

func TestFactoryThenFleet(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "factory")
	code, stdout, stderr := runCmd("factory", "--count", "4", "--out", out, "--quiet")
	if code != exitOK {
		t.Fatalf("factory: exit %d: %s", code, stderr)
	}
	for _, want := range []string{
		"minted 4 devices ACME-000001..ACME-000004",
		"embark manufacturer trust " + filepath.Join(out, "trust.json"),
		"embark provenance import " + filepath.Join(out, "manifest.json"),
	} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("factory output lacks %q:\n%s", want, stdout)
		}
	}

	p, err := esttest.NewPKI()
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(dir, "embark-root.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	manufacturer, err := os.ReadFile(filepath.Join(out, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	trusting := p.Roots()
	trusting.AppendCertsFromPEM(manufacturer)

	for _, tc := range []struct {
		name      string
		clientCAs bool
		args      []string
		code      int
		want      []string
	}{
		{name: "ok/both with renewal", clientCAs: true, args: []string{"--mode", "both", "--renew", "--concurrency", "2"}, code: exitOK,
			want: []string{"crts: 4 devices, 4 ok, 0 failed", "enroll: 4 devices, 4 ok, 0 failed", "renew: 4 devices, 4 ok, 0 failed", "of the crts ceiling"}},
		{name: "fail/devices refused exit 1", clientCAs: false, args: []string{"--count", "2"}, code: exitFailed,
			want: []string{"enroll: 2 devices, 0 ok, 2 failed (unauthenticated 2)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := esttest.Options{ClientCAs: p.Roots()}
			if tc.clientCAs {
				o.ClientCAs = trusting
			}
			s, err := esttest.Start(p, o)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			args := append([]string{"fleet", "--factory", out, "--server", s.Target, "--ca", rootFile, "--quiet"}, tc.args...)
			code, stdout, stderr := runCmd(args...)
			if code != tc.code {
				t.Fatalf("fleet: exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stdout, want) {
					t.Fatalf("fleet output lacks %q:\n%s", want, stdout)
				}
			}
		})
	}
}

func TestFactoryThenFleetMQTT(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "factory")
	if code, _, stderr := runCmd("factory", "--count", "3", "--out", out, "--quiet"); code != exitOK {
		t.Fatalf("factory: exit %d: %s", code, stderr)
	}
	p, err := mqtttest.NewPKI()
	if err != nil {
		t.Fatal(err)
	}
	rootFile := filepath.Join(dir, "embark-root.pem")
	if err := os.WriteFile(rootFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.Root.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	manufacturer, err := os.ReadFile(filepath.Join(out, "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	trusting := p.Roots()
	trusting.AppendCertsFromPEM(manufacturer)
	s, err := mqtttest.Start(p, mqtttest.Options{ClientCAs: trusting})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	code, stdout, stderr := runCmd("fleet", "--transport", "mqtt", "--factory", out, "--server", s.Target, "--ca", rootFile,
		"--quiet", "--mode", "both", "--renew", "--concurrency", "2")
	if code != exitOK {
		t.Fatalf("fleet: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, want := range []string{"connect: 3 devices, 3 ok, 0 failed", "enroll: 3 devices, 3 ok, 0 failed",
		"renew: 3 devices, 3 ok, 0 failed", "of the connect ceiling"} {
		if !strings.Contains(stdout, want) {
			t.Fatalf("fleet output lacks %q:\n%s", want, stdout)
		}
	}
	if s.Issued() != 6 {
		t.Fatalf("issued %d, want 6", s.Issued())
	}
}
