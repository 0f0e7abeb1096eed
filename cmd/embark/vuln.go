package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"text/tabwriter"

	"github.com/embark-iot/embark/pkg/vuln"
)

const vulnUsage = "vuln import FILE | show MANUFACTURER MODEL FIRMWARE"

func runVuln(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("vuln")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) == 2 && pos[0] == "import":
		return vulnImport(ctx, *data, pos[1], *asJSON, out)
	case len(pos) == 4 && pos[0] == "show":
		return vulnShow(ctx, *data, pos[1], pos[2], pos[3], *asJSON, out)
	}
	return fmt.Errorf("%w: %s", errUsage, vulnUsage)
}

func vulnImport(ctx context.Context, data, file string, asJSON bool, out io.Writer) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	// Read one byte more than the server takes, so that it answers "too
	// large" without this command reading a huge file whole.
	b, err := io.ReadAll(io.LimitReader(f, vuln.MaxDocumentSize+1))
	if err != nil {
		return err
	}
	if len(b) > vuln.MaxDocumentSize {
		return fmt.Errorf("%s: %w: more than %d bytes", file, vuln.ErrTooLarge, vuln.MaxDocumentSize)
	}
	cl, done, err := connect(ctx, data)
	if err != nil {
		return err
	}
	defer done()
	var res vuln.ImportResult
	if err := cl.Do(ctx, http.MethodPost, "/v1/vuln", b, &res); err != nil {
		return err
	}
	if asJSON {
		return vulnPrintJSON(out, res)
	}
	fmt.Fprintf(out, "imported %s (%s): data version %d\n", res.Format, res.Kind, res.DataVersion)
	if res.Products > 0 {
		fmt.Fprintf(out, "SBOM of %s: %d components\n", res.Product, res.Components)
	}
	fmt.Fprintf(out, "%d statements, %d unmatched; %d products changed, %d devices to re-evaluate\n",
		res.Statements, len(res.Unmatched), len(res.ChangedProducts), res.AffectedDevices)
	for _, u := range res.Unmatched {
		fmt.Fprintf(out, "unmatched: %s\n", u)
	}
	return nil
}

func vulnShow(ctx context.Context, data, manufacturer, model, firmware string, asJSON bool, out io.Writer) error {
	cl, done, err := connect(ctx, data)
	if err != nil {
		return err
	}
	defer done()
	q := url.Values{"manufacturer": {manufacturer}, "model": {model}, "firmware": {firmware}}
	var f vuln.Findings
	if err := cl.Do(ctx, http.MethodGet, "/v1/vuln?"+q.Encode(), nil, &f); err != nil {
		return err
	}
	if asJSON {
		return vulnPrintJSON(out, f)
	}
	product := f.Product
	if product == "" {
		product = manufacturer + " " + model + " " + firmware
	}
	sbom := "no SBOM"
	if f.SBOM != nil {
		sbom = fmt.Sprintf("SBOM of %d components (data version %d)", len(f.Components), f.SBOM.DataVersion)
	}
	fmt.Fprintf(out, "%s: %s, data version %d\n", product, sbom, f.DataVersion)
	if len(f.Open) == 0 {
		fmt.Fprintln(out, "no open findings")
		return nil
	}
	fmt.Fprintf(out, "%d open findings, max CVSS %s\n", len(f.Open), strconv.FormatFloat(f.MaxCVSS, 'f', 1, 64))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VULNERABILITY\tSTATE\tCVSS\tFIXED IN\tVIA\tDATA VERSION")
	for _, o := range f.Open {
		fmt.Fprintf(tw, "%s\t%s\t%.1f\t%s\t%s\t%d\n", o.ID, o.State, o.CVSS, dash(o.FixedIn), o.Via, o.DataVersion)
	}
	return tw.Flush()
}

func vulnPrintJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
