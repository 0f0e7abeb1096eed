package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
)

func runDevice(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("device")
	state := fs.String("state", "", "only devices in this state")
	limit := fs.Int("limit", 100, "at most this many devices (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	reason := fs.String("reason", "", "why (approve, deny)")
	campaign := fs.String("campaign", "", "campaign name (rotate)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	list := len(pos) == 1 && pos[0] == "list"
	show := len(pos) == 2 && pos[0] == "show"
	decide := len(pos) == 2 && (pos[0] == "approve" || pos[0] == "deny" || pos[0] == "revoke" ||
		pos[0] == "decommission" || pos[0] == "reonboard")
	command := len(pos) == 2 && (pos[0] == "rotate" || pos[0] == "desired")
	if !list && !show && !decide && !command {
		return fmt.Errorf("%w: device list | show ID | approve|deny|revoke|decommission|reonboard ID [--reason R] | rotate ID [--campaign C] | desired ID", errUsage)
	}
	if decide && pos[0] == "revoke" && *reason == "" {
		return fmt.Errorf("%w: device revoke ID --reason R: a reason is required", errUsage)
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	if decide {
		body, _ := json.Marshal(admin.OperatorRequest{Reason: *reason})
		var d device.Device
		if err := cl.Do(ctx, http.MethodPost, "/v1/devices/"+url.PathEscape(pos[1])+"/"+pos[0], body, &d); err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s (%s)\n", d.ID, d.State, d.Reason)
		return nil
	}
	if command {
		var d desired.Desired
		path := "/v1/devices/" + url.PathEscape(pos[1]) + "/" + pos[0]
		if pos[0] == "rotate" {
			body, _ := json.Marshal(admin.RotateRequest{Campaign: *campaign})
			err = cl.Do(ctx, http.MethodPost, path, body, &d)
		} else {
			err = cl.Do(ctx, http.MethodGet, path, nil, &d)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(out).Encode(d)
		}
		fmt.Fprintf(out, "%s: %s; applied %d\n", pos[1], d, d.Applied)
		return nil
	}
	if list {
		return deviceList(ctx, cl, *state, *limit, *asJSON, out)
	}
	var d admin.DeviceDetail
	if err := cl.Do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(pos[1]), nil, &d); err != nil {
		return err
	}
	var v provenance.View
	if err := cl.Do(ctx, http.MethodGet, "/v1/devices/"+url.PathEscape(pos[1])+"/provenance", nil, &v); err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			admin.DeviceDetail
			Provenance provenance.View `json:"provenance"`
		}{d, v})
	}
	printDevice(out, d)
	printView(out, v)
	return nil
}

func deviceList(ctx context.Context, cl *admin.Client, state string, limit int, asJSON bool, out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	if !asJSON {
		fmt.Fprintln(tw, "DEVICE\tSTATE\tZONE\tMODEL\tFIRMWARE\tCURRENT CERT\tUPDATED")
	}
	after, n := "", 0
	for {
		page := 1000
		if limit > 0 && limit-n < page {
			page = limit - n
		}
		q := url.Values{"limit": {strconv.Itoa(page)}}
		if after != "" {
			q.Set("after", after)
		}
		if state != "" {
			q.Set("state", state)
		}
		var l admin.DeviceList
		if err := cl.Do(ctx, http.MethodGet, "/v1/devices?"+q.Encode(), nil, &l); err != nil {
			return err
		}
		for _, d := range l.Devices {
			if asJSON {
				b, _ := json.Marshal(d)
				fmt.Fprintln(out, string(b))
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.State, dash(d.Zone), dash(d.Provenance.Model),
				dash(d.Provenance.FirmwareVersion), dash(short(d.Current)), d.UpdatedAt.Format(time.RFC3339))
		}
		n += len(l.Devices)
		if l.Next == "" || (limit > 0 && n >= limit) {
			break
		}
		after = l.Next
	}
	if asJSON {
		return nil
	}
	return tw.Flush()
}

func printDevice(out io.Writer, d admin.DeviceDetail) {
	p := d.Device.Provenance
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, dash(v)) }
	row("device", d.Device.ID)
	row("state", string(d.Device.State))
	row("zone", d.Device.Zone)
	row("reason", d.Device.Reason)
	row("cause", d.Device.Cause)
	row("updated", d.Device.UpdatedAt.Format(time.RFC3339))
	row("manufacturer", p.Manufacturer)
	row("serial", p.Serial)
	row("model", p.Model+" rev "+p.HardwareRev)
	row("firmware", p.FirmwareVersion+" sha256:"+p.FirmwareSHA256)
	row("owner", p.Owner)
	row("manufactured", p.ManufacturedAt.Format("2006-01-02")+" at "+p.Site)
	row("idevid key", "sha256:"+p.IDevIDKeySHA256)
	row("manifest revision", strconv.FormatUint(p.ManifestRevision, 10))
	row("enrollments", strconv.Itoa(int(d.Device.Enrollments)))
	row("renewals", strconv.Itoa(int(d.Device.Renewals)))
	tw.Flush()
	fmt.Fprintln(out, "\ncertificates:")
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  SERIAL\tKIND\tSTATUS\tNOT AFTER\tROLE")
	for _, c := range d.Certificates {
		role := ""
		switch c.Serial {
		case d.Device.Current:
			role = "current"
		case d.Device.Previous:
			role = "previous"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", c.Serial, c.Kind, c.Status, c.NotAfter.Format(time.RFC3339), dash(role))
	}
	tw.Flush()
}

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printView prints the provenance view: what the supply chain says.
func printView(out io.Writer, v provenance.View) {
	fmt.Fprintln(out, "\nprovenance:")
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s\t%s\n", k, dash(v)) }
	trust := "trusted"
	if !v.Manufacturer.Trusted {
		trust = "NOT trusted: " + v.Manufacturer.Distrusted
	}
	row("manufacturer", v.Manufacturer.Name+" ("+trust+")")
	row("firmware recorded", v.Firmware.RecordedVersion+" sha256:"+short(v.Firmware.RecordedSHA256))
	if rep := v.Firmware.Reported; !rep.Empty() {
		row("firmware reported", rep.FirmwareVersion+" sha256:"+short(rep.FirmwareSHA256)+" from "+rep.Remote)
	} else {
		row("firmware reported", "")
	}
	if v.Firmware.Mismatch != "" {
		row("FIRMWARE MISMATCH", v.Firmware.Mismatch)
	}
	ours := "another owner"
	if v.Owner.Ours {
		ours = "this operator"
	}
	o := v.Owner.Name
	if v.Owner.Key != "" {
		o += " key " + short(v.Owner.Key)
	}
	row("owner", fmt.Sprintf("%s (%s, %d transfers)", o, ours, v.Owner.Transfers))
	row("sbom", fmt.Sprintf("%s, %d components", dash(v.SBOM.Ref), len(v.SBOM.Components)))
	row("vulnerabilities", fmt.Sprintf("%d open, max CVSS %.1f", len(v.Vulns.Open), v.Vulns.MaxCVSS))
	if r := v.Vulns.Reported; r != nil {
		row("  of reported "+r.FirmwareVersion, fmt.Sprintf("%d open, max CVSS %.1f", len(r.Open), r.MaxCVSS))
	}
	row("clone", v.Flags.Clone)
	row("re-evaluate", v.Flags.Reevaluate)
	row("data versions", fmt.Sprintf("manifest r%d (key %s), vulnerability data v%d",
		v.DataVersions.ManifestRevision, short(v.DataVersions.ManifestKey), v.DataVersions.VulnData))
	tw.Flush()
	if len(v.Vulns.Open) > 0 {
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  VULNERABILITY\tSTATE\tCVSS\tFIXED IN\tVIA")
		for _, f := range v.Vulns.Open {
			fmt.Fprintf(tw, "  %s\t%s\t%.1f\t%s\t%s\n", f.ID, f.State, f.CVSS, dash(f.FixedIn), f.Via)
		}
		tw.Flush()
	}
}
