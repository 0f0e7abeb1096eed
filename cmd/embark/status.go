package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
)

func runStatus(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("status")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	var st map[string]any
	if err := cl.Do(ctx, http.MethodGet, "/v1/status", nil, &st); err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(st)
}

func runVersion(_ context.Context, _ []string, out io.Writer) error {
	_, err := io.WriteString(out, versionString()+"\n")
	return err
}
