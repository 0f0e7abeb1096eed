package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/transfer"
)

const transferUsage = "provenance transfer export --device ID --to-name NAME (--to-key OWNER.pub | --to-key-id KEYID) [--out FILE]" +
	" | import FILE [--from-key OWNER.pub | --from-key-id KEYID] | get ID [--out FILE]"

// runTransfer is `embark provenance transfer ...`: the seller exports a
// signed transfer record for the buyer; the buyer imports it.
func runTransfer(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("provenance transfer")
	dev := fs.String("device", "", "device to sell (export)")
	toName := fs.String("to-name", "", "the buyer's owner name (export)")
	toKey := fs.String("to-key", "", "the buyer's owner.pub (export)")
	toKeyID := fs.String("to-key-id", "", "the KeyID of the buyer's owner key, instead of --to-key (export)")
	outFile := fs.String("out", "-", "where to write the transfer file (export, get; - is standard output)")
	fromKey := fs.String("from-key", "", "the seller's owner.pub, confirmed out of band (import)")
	fromKeyID := fs.String("from-key-id", "", "the KeyID of the seller's owner key, instead of --from-key (import)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	usageErr := fmt.Errorf("%w: %s", errUsage, transferUsage)
	if len(pos) == 0 {
		return usageErr
	}
	switch {
	case pos[0] == "export" && len(pos) == 1:
		if *dev == "" || *toName == "" || (*toKey == "") == (*toKeyID == "") {
			return fmt.Errorf("%w: export needs --device, --to-name and one of --to-key, --to-key-id", errUsage)
		}
		req := admin.TransferExport{Device: *dev, ToName: *toName, ToKeyID: *toKeyID}
		if *toKey != "" {
			b, err := os.ReadFile(*toKey)
			if err != nil {
				return err
			}
			req.ToKey = string(b)
		}
		return transferExport(ctx, *data, req, *outFile, out)
	case pos[0] == "import" && len(pos) == 2:
		if *fromKey != "" && *fromKeyID != "" {
			return fmt.Errorf("%w: give --from-key or --from-key-id, not both", errUsage)
		}
		seller := *fromKeyID
		if *fromKey != "" {
			b, err := os.ReadFile(*fromKey)
			if err != nil {
				return err
			}
			k, err := hybridsig.ParsePublicKeyPEM(b)
			if err != nil {
				return fmt.Errorf("%s: %w", *fromKey, err)
			}
			seller = k.KeyID()
		}
		return transferImport(ctx, *data, pos[1], seller, out)
	case pos[0] == "get" && len(pos) == 2:
		return transferGet(ctx, *data, pos[1], *outFile, out)
	}
	return usageErr
}

func transferExport(ctx context.Context, dataDir string, req admin.TransferExport, outFile string, out io.Writer) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	var file json.RawMessage
	if err := cl.Do(ctx, http.MethodPost, "/v1/transfers/export", body, &file); err != nil {
		return err
	}
	rec, n, err := lastRecord(file)
	if err != nil {
		return fmt.Errorf("the server answered an unusable transfer file: %w", err)
	}
	if err := writeOut(outFile, file, out); err != nil {
		// The transfer is committed: say how to fetch the file again.
		return fmt.Errorf("%w (the transfer is done; `embark provenance transfer get %s` writes the file again)", err, rec.DeviceID())
	}
	if outFile != "-" {
		fmt.Fprintf(out, "transferred %s to %s (key %s), transfer %d; its LDevIDs are revoked here.\n",
			rec.DeviceID(), rec.To.Name, rec.To.KeyID, rec.Seq)
		fmt.Fprintf(out, "wrote %s (%d record(s)): give it to the buyer, who runs `embark provenance transfer import %s`\n",
			outFile, n, outFile)
	}
	return nil
}

func transferImport(ctx context.Context, dataDir, path, sellerKey string, out io.Writer) error {
	file, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	target := "/v1/transfers"
	if sellerKey != "" {
		target += "?from_key=" + url.QueryEscape(sellerKey)
	}
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	var res transfer.Result
	if err := cl.Do(ctx, http.MethodPost, target, file, &res); err != nil {
		return err
	}
	fmt.Fprintf(out, "accepted transfer %d of %s from %s (key %s): this operator owns it now; state %s.\n",
		res.Seq, res.DeviceID, res.From, res.FromKey, res.State)
	if res.NameOnly && sellerKey == "" {
		fmt.Fprintln(out, "note: the manifest named the seller by name only; confirm its key out of band"+
			" (next time: --from-key SELLER_OWNER.pub).")
	}
	return nil
}

func transferGet(ctx context.Context, dataDir, id, outFile string, out io.Writer) error {
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	var file json.RawMessage
	if err := cl.Do(ctx, http.MethodGet, "/v1/transfers/"+url.PathEscape(id), nil, &file); err != nil {
		return err
	}
	return writeOut(outFile, file, out)
}

// lastRecord decodes the newest record of a transfer file and counts them.
func lastRecord(file []byte) (*transfer.Opened, int, error) {
	envs, err := transfer.ParseFile(file)
	if err != nil {
		return nil, 0, err
	}
	rec, err := transfer.Open(envs[len(envs)-1])
	if err != nil {
		return nil, 0, err
	}
	return rec, len(envs), nil
}

// writeOut writes doc to path, or to out for "-".
func writeOut(path string, doc []byte, out io.Writer) error {
	doc = append(doc, '\n')
	if path == "-" {
		_, err := out.Write(doc)
		return err
	}
	return os.WriteFile(path, doc, 0o644)
}
