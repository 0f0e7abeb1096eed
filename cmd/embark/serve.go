package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/embark-iot/embark/pkg/server"
)

func runServe(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("serve")
	udp := fs.String("udp", "", "CoAP over DTLS listen address (overrides the configuration; \"off\" disables)")
	tcp := fs.String("tcp", "", "CoAP over TLS listen address (overrides the configuration; \"off\" disables)")
	brski := fs.String("brski", "", "plain CoAP voucher listen address, /.well-known/brski/rv only (overrides the configuration; \"off\" disables)")
	mqtt := fs.String("mqtt", "", "embedded MQTT broker listen address (overrides the configuration; \"off\" disables)")
	https := fs.String("https", "", "HTTPS admin API listen address (overrides the configuration; \"off\" disables)")
	level := fs.String("log-level", "", "debug, info, warn or error (overrides the configuration)")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := server.Init(*data)
	if err != nil {
		return err
	}
	override := func(dst *string, v string) {
		switch v {
		case "":
		case "off":
			*dst = ""
		default:
			*dst = v
		}
	}
	override(&cfg.CoAP.UDP, *udp)
	override(&cfg.CoAP.TCP, *tcp)
	override(&cfg.CoAP.BRSKI, *brski)
	override(&cfg.MQTT.Listen, *mqtt)
	override(&cfg.HTTPS.Listen, *https)
	override(&cfg.LogLevel, *level)
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	srv, err := server.New(ctx, cfg, server.WithLogger(log))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "embark %s serving %s (Ctrl-C stops)\n", server.Version, cfg.DataDir)
	return srv.Run(ctx)
}
