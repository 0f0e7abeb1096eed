package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/hybridsig"
)

// auditFlags lists the flags each audit subcommand takes (besides --data).
var auditFlags = map[string][]string{
	"list":   {"after", "limit"},
	"verify": {"bundle", "key"},
	"export": {"out"},
}

func runAudit(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("audit")
	after := fs.Uint64("after", 0, "list: entries after this sequence number")
	limit := fs.Int("limit", 100, "list: at most this many entries")
	bundle := fs.String("bundle", "", "verify: an exported bundle instead of the registry")
	keyFile := fs.String("key", "", "verify: the audit public key to trust (default DATA/audit.pub for the registry)")
	outFile := fs.String("out", "", "export: the bundle file to write")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || auditFlags[pos[0]] == nil {
		return fmt.Errorf("%w: audit list|verify|export", errUsage)
	}
	sub := pos[0]
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "data" {
			return
		}
		for _, ok := range auditFlags[sub] {
			if f.Name == ok {
				return
			}
		}
		bad = fmt.Errorf("%w: audit %s does not take --%s", errUsage, sub, f.Name)
	})
	if bad != nil {
		return bad
	}
	switch sub {
	case "verify":
		return auditVerify(ctx, out, *data, *bundle, *keyFile)
	case "export":
		if *outFile == "" {
			return fmt.Errorf("%w: audit export --out FILE", errUsage)
		}
		return auditExport(ctx, out, *data, *outFile)
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

// auditKeys returns the keys to verify checkpoints with and says where
// they come from: --key, else (for the registry) DATA/audit.pub if it
// exists, else none (the bundle's own keys).
func auditKeys(dataDir, bundle, keyFile string) ([]*hybridsig.PublicKey, string, error) {
	if keyFile == "" && bundle == "" {
		p := filepath.Join(dataDir, audit.PublicKeyFile)
		if _, err := os.Stat(p); err == nil {
			keyFile = p
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", err
		}
	}
	if keyFile == "" {
		return nil, "", nil
	}
	k, err := audit.LoadPublicKey(keyFile)
	if err != nil {
		return nil, "", err
	}
	return []*hybridsig.PublicKey{k}, keyFile, nil
}

// verifyStream verifies the bundle that produce writes, as it is written.
func verifyStream(produce func(io.Writer) error, keys []*hybridsig.PublicKey) (audit.BundleReport, error, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := produce(pw)
		pw.CloseWithError(err)
		done <- err
	}()
	rep, verr := audit.VerifyBundle(pr, keys...)
	// Let the producer finish whatever the verifier did not read.
	_, _ = io.Copy(io.Discard, pr)
	perr := <-done
	return rep, verr, perr
}

func auditVerify(ctx context.Context, out io.Writer, dataDir, bundle, keyFile string) error {
	keys, keySource, err := auditKeys(dataDir, bundle, keyFile)
	if err != nil {
		return err
	}
	var rep audit.BundleReport
	if bundle != "" {
		f, err := os.Open(bundle)
		if err != nil {
			return err
		}
		defer f.Close()
		rep, err = audit.VerifyBundle(f, keys...)
		if err != nil {
			return err
		}
	} else {
		cl, done, err := connect(ctx, dataDir)
		if err != nil {
			return err
		}
		defer done()
		var verr, perr error
		rep, verr, perr = verifyStream(func(w io.Writer) error { return cl.AuditBundle(ctx, w) }, keys)
		if perr != nil {
			return perr
		}
		if verr != nil {
			return verr
		}
	}
	printReport(out, rep, keySource)
	return nil
}

func printReport(out io.Writer, rep audit.BundleReport, keySource string) {
	if rep.Entries == 0 {
		fmt.Fprintln(out, "audit log verified: no entries")
	} else {
		fmt.Fprintf(out, "audit log verified: entries 1 to %d, the last with hash %s\n", rep.Last, hex.EncodeToString(rep.LastHash))
	}
	if rep.Checkpoints == 0 {
		fmt.Fprintln(out, "checkpoints: none")
	} else {
		fmt.Fprintf(out, "checkpoints: %d verified (ECDSA P-256 and ML-DSA-65), the last for entry %d at %s\n",
			rep.Checkpoints, rep.LastCheckpoint.Seq, rep.LastCheckpoint.Time.Format(time.RFC3339))
	}
	for _, id := range rep.Keys {
		fmt.Fprintf(out, "signed by: %s\n", id)
	}
	switch {
	case keySource != "":
		fmt.Fprintf(out, "trusted key: %s\n", keySource)
	case rep.Checkpoints > 0:
		fmt.Fprintln(out, "trusted key: none given; the checkpoints were checked against the keys the log carries,"+
			" which shows integrity, not who signed: pass --key audit.pub")
	}
	if n := rep.Unsigned(); n > 0 {
		fmt.Fprintf(out, "not yet checkpointed: %s after entry %d\n", counted(n, "entry", "entries"), rep.LastCheckpoint.Seq)
	}
}

func auditExport(ctx context.Context, out io.Writer, dataDir, outFile string) error {
	if _, err := os.Lstat(outFile); err == nil {
		return fmt.Errorf("%s exists; choose another name", outFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	keys, keySource, err := auditKeys(dataDir, "", "")
	if err != nil {
		return err
	}
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	f, err := os.CreateTemp(filepath.Dir(outFile), ".tmp-bundle-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	sum := sha256.New()
	// The bundle is checked as it streams to the file.
	rep, verr, perr := verifyStream(func(w io.Writer) error {
		return cl.AuditBundle(ctx, io.MultiWriter(f, sum, w))
	}, keys)
	if perr != nil {
		f.Close()
		return perr
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Link(tmp, outFile); err != nil {
		return err
	}
	if verr != nil {
		return fmt.Errorf("wrote %s, but the exported log does not verify: %w", outFile, verr)
	}
	fmt.Fprintf(out, "exported %s and %s to %s (sha256 %s)\n", counted(rep.Entries, "entry", "entries"),
		counted(uint64(rep.Checkpoints), "checkpoint", "checkpoints"), outFile, hex.EncodeToString(sum.Sum(nil)))
	if keySource != "" {
		fmt.Fprintf(out, "verify it with: embark audit verify --bundle %s --key audit.pub (a copy of %s)\n", outFile, keySource)
	}
	return nil
}

// counted returns "1 entry" or "n entries".
func counted(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.FormatUint(n, 10) + " " + many
}
