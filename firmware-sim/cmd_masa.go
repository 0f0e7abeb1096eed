package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/embark-iot/embark/firmware-sim/masa"
	"github.com/embark-iot/embark/pkg/hybridsig"
)

// ownerKeyFlags collects --owner-key NAME=FILE.
type ownerKeyFlags map[string]*hybridsig.PublicKey

func (f ownerKeyFlags) String() string { return "" }

func (f ownerKeyFlags) Set(v string) error {
	name, file, ok := strings.Cut(v, "=")
	if !ok || name == "" || file == "" {
		return fmt.Errorf("want NAME=FILE, got %q", v)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	k, err := hybridsig.ParsePublicKeyPEM(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	f[name] = k
	return nil
}

// nameFlags collects repeated --name values.
type nameFlags []string

func (f *nameFlags) String() string     { return strings.Join(*f, ",") }
func (f *nameFlags) Set(v string) error { *f = append(*f, v); return nil }

func cmdMASA(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("masa", flag.ContinueOnError)
	o := masa.Options{OwnerKeys: ownerKeyFlags{}}
	var listen string
	var names nameFlags
	var debug bool
	fs.StringVar(&o.FactoryDir, "factory", "", "output directory of firmware-sim factory: sales records and keys (required)")
	fs.StringVar(&listen, "listen", "127.0.0.1:8444", "HTTPS address (TLS 1.3, X25519MLKEM768 only)")
	fs.Var(&names, "name", "DNS name or IP address of the TLS certificate (repeatable; default localhost, 127.0.0.1, ::1)")
	fs.Var(ownerKeyFlags(o.OwnerKeys), "owner-key", "NAME=FILE: the owner key (embark's owner.pub) of an owner that sales records name without a key (repeatable)")
	fs.DurationVar(&o.MaxNonceless, "max-nonceless", masa.DefaultMaxNonceless, "longest life of a nonceless voucher")
	fs.StringVar(&o.LogPath, "log", "", "JSON-lines log of every voucher and refusal (default FACTORY/"+masa.LogFile+")")
	fs.BoolVar(&debug, "debug", false, "log every TLS handshake")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: firmware-sim masa --factory DIR [--listen ADDR] [flags]\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if o.FactoryDir == "" {
		return usageError(stderr, fs, "--factory is required")
	}
	o.ServerNames = names
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	m, err := masa.New(o)
	if err != nil {
		fmt.Fprintf(stderr, "firmware-sim masa: %v\n", err)
		return exitFailed
	}
	addr, err := m.Listen(listen)
	if err != nil {
		fmt.Fprintf(stderr, "firmware-sim masa: %v\n", err)
		return exitFailed
	}
	st := m.Stats()
	fmt.Fprintf(stdout, "MASA of %s: %d devices sold, %d domains registered\n", st.Manufacturer, st.Devices, st.Registrations)
	fmt.Fprintf(stdout, "listening on https://%s (TLS 1.3, X25519MLKEM768 only)\n", addr)
	fmt.Fprintf(stdout, "\nnext step:\n  embark manufacturer masa %s https://%s\n", st.Manufacturer, addr)
	<-ctx.Done()
	done := make(chan error, 1)
	go func() { done <- m.Close() }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
	}
	if err != nil {
		fmt.Fprintf(stderr, "firmware-sim masa: %v\n", err)
		return exitFailed
	}
	st = m.Stats()
	fmt.Fprintf(stdout, "vouchers issued %d, refused %d\n", st.Issued, st.Refused)
	return exitOK
}
