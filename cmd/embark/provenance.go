package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
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
	b, err := os.ReadFile(pos[1])
	if err != nil {
		return err
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	var res provenance.ImportResult
	if err := cl.Do(ctx, http.MethodPost, "/v1/manifests", b, &res); err != nil {
		return err
	}
	fmt.Fprintf(out, "imported %s manifest revision %d: %d devices (%d new, %d updated), signed by %s\n",
		res.Manufacturer, res.Revision, res.Devices, res.New, res.Updated, res.SignerKey)
	return nil
}
