package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/embark-iot/embark/pkg/device"
)

func runCert(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("cert")
	within := fs.Duration("within", 72*time.Hour, "expiring within this window")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "expiring" || *within <= 0 {
		return fmt.Errorf("%w: cert expiring [--within 72h]", errUsage)
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	var certs []device.Certificate
	if err := cl.Do(ctx, http.MethodGet, "/v1/certs/expiring?within="+url.QueryEscape(within.String()), nil, &certs); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSERIAL\tSTATUS\tNOT AFTER")
	for _, c := range certs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.DeviceID, c.Serial, c.Status, c.NotAfter.Format(time.RFC3339))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%d certificates expire within %s\n", len(certs), *within)
	return nil
}
