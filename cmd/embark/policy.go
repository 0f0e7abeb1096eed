package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"text/tabwriter"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/policy"
)

func runPolicy(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("policy")
	file := fs.String("file", "", "explain with this policy file instead of the active one")
	all := fs.Bool("all", false, "test: list every device, not only those whose decision would change")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	usage := fmt.Errorf("%w: policy check FILE | explain DEVICE [--file F] | test FILE [--all]", errUsage)
	if len(pos) != 2 {
		return usage
	}
	switch pos[0] {
	case "check":
		p, err := policy.Load(pos[1])
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: policy %s is valid: %d zones, sha256 %s\n", pos[1], p.Name(), len(p.Zones()), p.Hash())
		return nil
	case "explain":
		var body []byte
		method, path := http.MethodGet, "/v1/policy/explain/"+url.PathEscape(pos[1])
		if *file != "" {
			if body, err = os.ReadFile(*file); err != nil {
				return err
			}
			method, path = http.MethodPost, path+"?file="+url.QueryEscape(*file)
		}
		cl, done, err := connect(ctx, *data)
		if err != nil {
			return err
		}
		defer done()
		var a admin.ExplainAnswer
		if err := cl.Do(ctx, method, path, body, &a); err != nil {
			return err
		}
		fmt.Fprintf(out, "policy %s for %s\n", a.Policy, a.Input.Device.ID)
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "RULE\tRESULT\tWHEN")
		for _, r := range a.Explanation.Rules {
			res := "no match"
			switch {
			case r.Err != "":
				res = "error: " + r.Err
			case r.Matched:
				res = "MATCH"
			case r.Skipped:
				res = "not evaluated (an earlier rule matched)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Name, res, r.Expr)
		}
		tw.Flush()
		d := a.Explanation.Decision
		fmt.Fprintf(out, "decision: %s", d.Action)
		if d.Zone.Name != "" {
			fmt.Fprintf(out, " zone %s (SL %d)", d.Zone.Name, d.Zone.SecurityLevel)
		}
		if d.Lifetime > 0 {
			fmt.Fprintf(out, " lifetime %s", d.Lifetime)
		}
		fmt.Fprintf(out, " by rule %s: %s\n", d.Rule, d.Reason)
		in := a.Input
		fmt.Fprintf(out, "facts: state %s, model %s, firmware %s (reported %q, mismatch %v), manufacturer trusted %v, owner ours %v, clone %v, open vulnerabilities %d (max CVSS %.1f)\n",
			in.Device.State, in.Device.Model, in.Device.FirmwareRecorded, in.Device.FirmwareReported, in.Device.FirmwareMismatch,
			in.Provenance.ManufacturerTrusted, in.Provenance.OwnerOurs, in.Provenance.Clone, in.Vulns.Open, in.Vulns.MaxCVSS)
		return nil
	case "test":
		src, err := os.ReadFile(pos[1])
		if err != nil {
			return err
		}
		if _, err := policy.Parse(pos[1], src); err != nil {
			return err
		}
		cl, done, err := connect(ctx, *data)
		if err != nil {
			return err
		}
		defer done()
		q := url.Values{"file": {pos[1]}}
		if *all {
			q.Set("all", "1")
		}
		var a admin.DryRunAnswer
		if err := cl.Do(ctx, http.MethodPost, "/v1/policy/test?"+q.Encode(), src, &a); err != nil {
			return err
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tNOW\tWOULD BE\tRULE\tCHANGE")
		changes := 0
		for _, r := range a.Rows {
			if r.Change != "" {
				changes++
			}
			fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%s\t%s\n", r.Device, r.State, dash(r.Zone), r.Action, dash(r.NewZone), r.Rule, dash(r.Change))
		}
		tw.Flush()
		fmt.Fprintf(out, "policy %s: %d devices would change\n", a.Policy, changes)
		return nil
	}
	return usage
}
