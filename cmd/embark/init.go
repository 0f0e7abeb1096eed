package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/embark-iot/embark/pkg/server"
)

func runInit(_ context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("init")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := server.Init(*data)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "data directory %s ready\n  configuration %s\n  CA root       %s\n",
		cfg.DataDir, filepath.Join(cfg.DataDir, "embark.json"), filepath.Join(cfg.DataDir, server.CADir, "root.crt"))
	return nil
}
