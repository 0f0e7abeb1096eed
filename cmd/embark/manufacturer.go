package main

import (
	"context"
	"encoding/json"
	"net/url"

	"fmt"
	"github.com/embark-iot/embark/pkg/admin"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
)

func runManufacturer(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("manufacturer")
	reason := fs.String("reason", "", "why trust is withdrawn (distrust)")
	key := fs.String("key", "", "withdraw only this manifest key (KeyID), after a compromise (distrust)")
	masaCA := fs.String("masa-ca", "", "PEM CA that authenticates the MASA instead of the manufacturer's roots (masa)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if (len(pos) == 2 || len(pos) == 3) && pos[0] == "masa" {
		return manufacturerMASA(ctx, *data, pos[1], strings.Join(pos[2:], ""), *masaCA, out)
	}
	if len(pos) == 2 && pos[0] == "distrust" {
		return distrustManufacturer(ctx, *data, pos[1], *key, *reason, out)
	}
	trust := len(pos) == 2 && pos[0] == "trust"
	list := len(pos) == 1 && pos[0] == "list"
	if !trust && !list {
		return fmt.Errorf("%w: manufacturer trust FILE | list | distrust NAME --reason R [--key KEYID] | masa NAME [URL [--masa-ca FILE]]", errUsage)
	}
	var bundle []byte
	if trust {
		if bundle, err = os.ReadFile(pos[1]); err != nil {
			return err
		}
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	switch {
	case trust:
		var res provenance.TrustResult
		if err := cl.Do(ctx, http.MethodPost, "/v1/manufacturers", bundle, &res); err != nil {
			return err
		}
		verb := "trusted"
		if res.Replaced {
			verb = "updated"
		}
		fmt.Fprintf(out, "%s manufacturer %s: %d root(s), %d intermediate(s), manifest keys %v\n",
			verb, res.Name, res.Roots, res.Intermediates, res.ManifestKeys)
		return nil
	default:
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
}

func distrustManufacturer(ctx context.Context, data, name, key, reason string, out io.Writer) error {
	if reason == "" {
		return fmt.Errorf("%w: manufacturer distrust NAME --reason R [--key KEYID]: a reason is required", errUsage)
	}
	cl, done, err := connect(ctx, data)
	if err != nil {
		return err
	}
	defer done()
	path := "/v1/manufacturers/" + url.PathEscape(name) + "/distrust"
	if key != "" {
		path = "/v1/manufacturers/" + url.PathEscape(name) + "/keys/" + url.PathEscape(key) + "/distrust"
	}
	body, _ := json.Marshal(admin.DistrustRequest{Reason: reason})
	var res provenance.DistrustResult
	if err := cl.Do(ctx, http.MethodPost, path, body, &res); err != nil {
		return err
	}
	what := "manufacturer " + res.Manufacturer
	if res.Key != "" {
		what = "manifest key " + res.Key + " of " + res.Manufacturer
	}
	fmt.Fprintf(out, "withdrew trust in %s; %d devices marked for re-evaluation\n", what, res.Marked)
	return nil
}
