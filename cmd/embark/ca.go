package main

import (
	"context"
	"encoding/json"
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
	"strings"
	"text/tabwriter"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/cabackup"
	"github.com/embark-iot/embark/pkg/server"
)

// caFlags lists the flags each ca subcommand takes (besides --data).
var caFlags = map[string][]string{
	"backup-key": {"out"},
	"backup":     {"to", "out"},
	"restore":    {"key", "in"},
	"rollover":   {"root"},
	"status":     {},
	"retire":     {},
}

// caUsage is the usage of the ca command.
const caUsage = "ca backup-key --out NAME | backup --to NAME.pub --out FILE | restore --key NAME.key --in FILE | rollover [--root] | status | retire ID"

func runCA(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("ca")
	outFile := fs.String("out", "", "backup-key: base name of the key files; backup: the backup file")
	to := fs.String("to", "", "backup: the recipient's public key (NAME.pub)")
	keyFile := fs.String("key", "", "restore: the recipient's private key (NAME.key)")
	in := fs.String("in", "", "restore: the backup file")
	newRoot := fs.Bool("root", false, "rollover: also a new root, bridged from the current one")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || caFlags[pos[0]] == nil {
		return fmt.Errorf("%w: %s", errUsage, caUsage)
	}
	sub := pos[0]
	if want := map[bool]int{true: 2, false: 1}[sub == "retire"]; len(pos) != want {
		return fmt.Errorf("%w: %s", errUsage, caUsage)
	}
	var bad error
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "data" {
			return
		}
		for _, ok := range caFlags[sub] {
			if f.Name == ok {
				return
			}
		}
		bad = fmt.Errorf("%w: ca %s does not take --%s", errUsage, sub, f.Name)
	})
	if bad != nil {
		return bad
	}
	caDir := filepath.Join(*data, server.CADir)
	switch sub {
	case "rollover", "status", "retire":
		return caLifecycle(ctx, out, *data, pos, *newRoot)
	case "backup-key":
		if *outFile == "" {
			return fmt.Errorf("%w: ca backup-key --out NAME", errUsage)
		}
		base := strings.TrimSuffix(strings.TrimSuffix(*outFile, ".key"), ".pub")
		k, err := cabackup.WriteKeyPair(base)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "wrote %s.key (keep it offline) and %s.pub (X-Wing, key id %s)\n", base, base, k.Public().KeyID())
		return nil
	case "backup":
		if *to == "" || *outFile == "" {
			return fmt.Errorf("%w: ca backup --to NAME.pub --out FILE", errUsage)
		}
		return caBackup(out, caDir, *to, *outFile)
	default:
		if *keyFile == "" || *in == "" {
			return fmt.Errorf("%w: ca restore --key NAME.key --in FILE --data DIR", errUsage)
		}
		return caRestore(out, caDir, *keyFile, *in)
	}
}

func caBackup(out io.Writer, caDir, pubFile, outFile string) error {
	if _, err := os.Lstat(outFile); err == nil {
		return fmt.Errorf("%s exists; choose another name", outFile)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pub, err := cabackup.ReadPublicKey(pubFile)
	if err != nil {
		return err
	}
	c, err := cabackup.ReadCA(caDir)
	if err != nil {
		return err
	}
	sealed, err := cabackup.Seal(c, pub, time.Now())
	if err != nil {
		return err
	}
	f, err := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(sealed); err != nil {
		f.Close()
		os.Remove(outFile)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(outFile)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(outFile)
		return err
	}
	fmt.Fprintf(out, "sealed %s of CA %s (root sha256 %s) to key %s in %s\n",
		strings.Join(names(c), ", "), caDir, c.RootSHA256, pub.KeyID(), outFile)
	return nil
}

func caRestore(out io.Writer, caDir, keyFile, in string) error {
	key, err := cabackup.ReadPrivateKey(keyFile)
	if err != nil {
		return err
	}
	data, err := readAtMost(in, cabackup.MaxSize)
	if err != nil {
		return err
	}
	c, err := cabackup.Restore(data, key, caDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "restored %s into %s: root sha256 %s, sealed %s\n",
		strings.Join(names(c), ", "), caDir, c.RootSHA256, c.Created.Format(time.RFC3339))
	return nil
}

// names lists the files of a backup in their canonical order.
func names(c cabackup.Contents) []string {
	var out []string
	for _, n := range cabackup.Files {
		if _, ok := c.Files[n]; ok {
			out = append(out, n)
		}
	}
	return out
}

// readAtMost reads a file of at most n bytes (one more is read to tell).
func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, fmt.Errorf("%s: more than %d bytes: not a CA backup", path, n)
	}
	return b, nil
}

// caLifecycle runs ca rollover, status and retire through the admin API
// (the running server, or the data directory when none runs).
func caLifecycle(ctx context.Context, out io.Writer, dataDir string, pos []string, newRoot bool) error {
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	var st admin.CAStatus
	switch pos[0] {
	case "status":
		if err := cl.Do(ctx, http.MethodGet, "/v1/ca", nil, &st); err != nil {
			return err
		}
		return printCAStatus(out, st)
	case "rollover":
		body, err := json.Marshal(admin.RolloverRequest{NewRoot: newRoot})
		if err != nil {
			return err
		}
		if err := cl.Do(ctx, http.MethodPost, "/v1/ca/rollover", body, &st); err != nil {
			return err
		}
		if err := printCAStatus(out, st); err != nil {
			return err
		}
		fmt.Fprintf(out, "\nintermediate %s issues from now on. Devices move onto it when they renew (a rotation campaign\n"+
			"speeds this up); retire a previous intermediate with `embark ca retire ID` once it has no live certificates.\n", st.Active)
		return nil
	default:
		if err := cl.Do(ctx, http.MethodPost, "/v1/ca/intermediates/"+url.PathEscape(pos[1])+"/retire", nil, &st); err != nil {
			return err
		}
		return printCAStatus(out, st)
	}
}

func printCAStatus(out io.Writer, st admin.CAStatus) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "GEN\tSTATE\tLIVE\tNOT AFTER\tID\tSUBJECT\tROOT")
	for _, in := range st.Intermediates {
		live := strconv.Itoa(in.LiveCertificates)
		if len(in.EmbarkCertificates) > 0 {
			live += " + " + strings.Join(in.EmbarkCertificates, ", ")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Generation, in.State, live,
			in.NotAfter.UTC().Format(time.RFC3339), in.ID, in.Subject, in.Root)
	}
	return tw.Flush()
}
