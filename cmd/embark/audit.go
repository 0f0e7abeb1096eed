package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
)

func runAudit(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("audit")
	after := fs.Uint64("after", 0, "entries after this sequence number")
	limit := fs.Int("limit", 100, "at most this many entries")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "list" {
		return fmt.Errorf("%w: audit list", errUsage)
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	q := url.Values{"after": {strconv.FormatUint(*after, 10)}, "limit": {strconv.Itoa(*limit)}}
	var page admin.AuditPage
	if err := cl.Do(ctx, http.MethodGet, "/v1/audit?"+q.Encode(), nil, &page); err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tACTOR\tACTION\tDEVICE\tOUTCOME\tDETAIL")
	for _, e := range page.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), e.Actor, e.Action,
			dash(e.DeviceID), e.Outcome, e.Detail)
	}
	return tw.Flush()
}
