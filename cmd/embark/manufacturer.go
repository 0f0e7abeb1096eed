package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"text/tabwriter"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
)

func runManufacturer(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("manufacturer")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return fmt.Errorf("%w: manufacturer trust FILE | list", errUsage)
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	switch {
	case pos[0] == "trust" && len(pos) == 2:
		b, err := os.ReadFile(pos[1])
		if err != nil {
			return err
		}
		var res provenance.TrustResult
		if err := cl.Do(ctx, http.MethodPost, "/v1/manufacturers", b, &res); err != nil {
			return err
		}
		verb := "trusted"
		if res.Replaced {
			verb = "updated"
		}
		fmt.Fprintf(out, "%s manufacturer %s: %d root(s), %d intermediate(s), manifest keys %v\n",
			verb, res.Name, res.Roots, res.Intermediates, res.ManifestKeys)
		return nil
	case pos[0] == "list" && len(pos) == 1:
		var ms []device.Manufacturer
		if err := cl.Do(ctx, http.MethodGet, "/v1/manufacturers", nil, &ms); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tDEVICES\tMANIFEST REVISION\tTRUSTED AT")
		for _, m := range ms {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", m.Name, m.Devices, m.ManifestRevision, m.TrustedAt.Format("2006-01-02 15:04:05Z07:00"))
		}
		return tw.Flush()
	}
	return fmt.Errorf("%w: manufacturer trust FILE | list", errUsage)
}
