package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/embark-iot/embark/pkg/provenance"
)

func runProvenance(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("provenance")
	if len(args) > 0 && args[0] == "transfer" {
		return runTransfer(ctx, args[1:], out)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "import" {
		return fmt.Errorf("%w: provenance import FILE", errUsage)
	}
	// The file streams to the server: a manifest of 100,000 devices is
	// about 65 MB.
	f, err := os.Open(pos[1])
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	var res provenance.ImportResult
	if err := cl.Upload(ctx, "/v1/manifests", f, fi.Size(), &res); err != nil {
		return err
	}
	fmt.Fprintf(out, "imported %s manifest revision %d: %d devices (%d new, %d updated), signed by %s\n",
		res.Manufacturer, res.Revision, res.Devices, res.New, res.Updated, res.SignerKey)
	return nil
}
