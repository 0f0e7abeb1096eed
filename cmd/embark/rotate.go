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
	"github.com/embark-iot/embark/pkg/campaign"
)

const rotateUsage = "rotate device ID | model M | zone Z | all [--rate N] [--timeout D] [--wait] | status [ID] | cancel ID"

// runRotate starts, shows and cancels rotation campaigns.
func runRotate(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("rotate")
	rate := fs.Float64("rate", campaign.DefaultRate, "devices asked per second (0: no limit)")
	timeout := fs.Duration("timeout", campaign.DefaultTimeout, "how long each device has to complete")
	wait := fs.Bool("wait", false, "wait until the campaign finished and print its figures")
	state := fs.String("state", "", "status ID: only the devices in this state")
	limit := fs.Int("limit", 100, "status ID: at most this many devices (0: all)")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	var req *admin.CampaignRequest
	switch {
	case len(pos) == 2 && (pos[0] == "device" || pos[0] == "model" || pos[0] == "zone"):
		req = &admin.CampaignRequest{Select: campaign.Select(pos[0]), Value: pos[1]}
	case len(pos) == 1 && pos[0] == "all":
		req = &admin.CampaignRequest{Select: campaign.SelectAll}
	case (len(pos) == 1 || len(pos) == 2) && pos[0] == "status":
	case len(pos) == 2 && pos[0] == "cancel":
	default:
		return fmt.Errorf("%w: %s", errUsage, rotateUsage)
	}
	if *limit < 0 {
		return fmt.Errorf("%w: --limit %d < 0", errUsage, *limit)
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	switch {
	case req != nil:
		if *rate == 0 {
			req.Unlimited = true
		} else {
			req.Rate = rate
		}
		req.Timeout = timeout.String()
		body, _ := json.Marshal(req)
		var s campaign.Summary
		if err := cl.Do(ctx, http.MethodPost, "/v1/campaigns", body, &s); err != nil {
			return err
		}
		if !*wait {
			if *asJSON {
				return json.NewEncoder(out).Encode(s)
			}
			fmt.Fprintf(out, "campaign %s: rotate %s, %d devices, %s, timeout %s\n", s.ID, s.Selector, s.Devices, rateOf(s.Campaign), time.Duration(s.Timeout))
			return nil
		}
		return waitCampaign(ctx, cl, s.ID, *asJSON, out)
	case pos[0] == "cancel":
		var c campaign.Campaign
		if err := cl.Do(ctx, http.MethodPost, "/v1/campaigns/"+url.PathEscape(pos[1])+"/cancel", nil, &c); err != nil {
			return err
		}
		fmt.Fprintf(out, "campaign %s: %s\n", c.ID, c.State)
		return nil
	case len(pos) == 1:
		var l admin.CampaignList
		if err := cl.Do(ctx, http.MethodGet, "/v1/campaigns", nil, &l); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(out).Encode(l)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CAMPAIGN\tSELECT\tSTATE\tRATE\tDEVICES\tQUEUED\tPENDING\tDONE\tFAILED\tOFFLINE\tCREATED")
		for _, s := range l.Campaigns {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.ID, s.Selector, s.State, rateOf(s.Campaign), s.Devices,
				s.Counts.Queued, s.Counts.Pending, s.Counts.Done, s.Counts.Failed, s.Counts.Offline, s.Created.UTC().Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return campaignStatus(ctx, cl, pos[1], campaign.ItemState(*state), *limit, *asJSON, out)
}

func rateOf(c campaign.Campaign) string {
	if c.Unlimited {
		return "no limit"
	}
	return strconv.FormatFloat(c.Rate, 'g', -1, 64) + "/s"
}

// campaignStatus prints a campaign, its counts and its devices, page by page.
func campaignStatus(ctx context.Context, cl *admin.Client, id string, state campaign.ItemState, limit int, asJSON bool, out io.Writer) error {
	var all campaign.Detail
	after, n := "", 0
	for {
		page := 1000
		if limit > 0 {
			page = min(page, limit-n)
		}
		q := url.Values{"limit": {strconv.Itoa(page)}}
		if after != "" {
			q.Set("after", after)
		}
		if state != "" {
			q.Set("state", string(state))
		}
		var d campaign.Detail
		if err := cl.Do(ctx, http.MethodGet, "/v1/campaigns/"+url.PathEscape(id)+"?"+q.Encode(), nil, &d); err != nil {
			return err
		}
		if after == "" {
			all.Summary = d.Summary
		}
		all.Items = append(all.Items, d.Items...)
		n += len(d.Items)
		all.Next = d.Next
		if d.Next == "" || (limit > 0 && n >= limit) {
			break
		}
		after = d.Next
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(all)
	}
	printSummary(out, all.Summary)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tSTATE\tASKED\tDONE\tNEW CERT\tREASON")
	for _, it := range all.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", it.Device, it.State, stamp(it.AskedAt), stamp(it.DoneAt), it.NewCert, it.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if all.Next != "" {
		fmt.Fprintf(out, "(more: --limit 0 for all)\n")
	}
	return nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("15:04:05.000")
}

func printSummary(out io.Writer, s campaign.Summary) {
	c := s.Counts
	fmt.Fprintf(out, "campaign %s: rotate %s, %s, %s, timeout %s\n", s.ID, s.Selector, s.State, rateOf(s.Campaign), time.Duration(s.Timeout))
	fmt.Fprintf(out, "devices %d: queued %d, pending %d, done %d, failed %d, offline %d, cancelled %d\n",
		s.Devices, c.Queued, c.Pending, c.Done, c.Failed, c.Offline, c.Cancelled)
	if !s.Ended.IsZero() {
		fmt.Fprintf(out, "started %s, ended %s: %s\n", s.Created.UTC().Format(time.RFC3339Nano), s.Ended.UTC().Format(time.RFC3339Nano),
			s.Ended.Sub(s.Created).Round(time.Millisecond))
	}
}

// waitCampaign polls a campaign until it is no longer running, printing
// its counts once a second, then its figures.
func waitCampaign(ctx context.Context, cl *admin.Client, id string, asJSON bool, out io.Writer) error {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	last := time.Now()
	for {
		var d campaign.Detail
		if err := cl.Do(ctx, http.MethodGet, "/v1/campaigns/"+url.PathEscape(id)+"?limit=1", nil, &d); err != nil {
			return err
		}
		if d.State != campaign.Running {
			if asJSON {
				return json.NewEncoder(out).Encode(d.Summary)
			}
			printSummary(out, d.Summary)
			return nil
		}
		if !asJSON && time.Since(last) >= time.Second {
			last = time.Now()
			c := d.Counts
			fmt.Fprintf(out, "%s: queued %d, pending %d, done %d, failed %d, offline %d\n", id, c.Queued, c.Pending, c.Done, c.Failed, c.Offline)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
