package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/registrar"
)

const voucherUsage = "voucher prefetch --serials FILE | --all-held --out DIR [--lifetime 168h]"

// runVoucher: embark voucher prefetch ...
func runVoucher(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("voucher")
	serials := fs.String("serials", "", "file with one device per line (URN or manufacturer:serial)")
	allHeld := fs.Bool("all-held", false, "every device the registry holds that has not onboarded yet (expected or held)")
	dir := fs.String("out", "", "directory to write the vouchers to, DIR/<manufacturer>/<serial>.voucher (an Embark's DATA/vouchers serves them)")
	lifetime := fs.Duration("lifetime", registrar.DefaultPrefetchLifetime, "how long the vouchers should hold (the MASA may shorten it)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || pos[0] != "prefetch" || *dir == "" || (*serials == "") == !*allHeld {
		return fmt.Errorf("%w: %s", errUsage, voucherUsage)
	}
	req := admin.PrefetchRequest{Pending: *allHeld, Lifetime: lifetime.String()}
	if *serials != "" {
		if req.Devices, err = readLines(*serials); err != nil {
			return err
		}
		if len(req.Devices) == 0 {
			return fmt.Errorf("%s names no device", *serials)
		}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	cl, done, err := connect(ctx, *data)
	if err != nil {
		return err
	}
	defer done()
	var res admin.PrefetchResult
	if err := cl.Do(ctx, http.MethodPost, "/v1/vouchers/prefetch", body, &res); err != nil {
		return err
	}
	written, failed := 0, 0
	for _, p := range res.Vouchers {
		if p.Error != "" {
			failed++
			fmt.Fprintf(out, "%s: refused: %s\n", p.DeviceID, p.Error)
			continue
		}
		path, err := registrar.VoucherPath(*dir, p.Manufacturer, p.Serial)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, p.Voucher, 0o600); err != nil {
			return err
		}
		written++
	}
	fmt.Fprintf(out, "wrote %d nonceless vouchers to %s", written, *dir)
	if written > 0 {
		fmt.Fprintf(out, " (first expiry %s)", firstExpiry(res.Vouchers).Format(time.RFC3339))
	}
	fmt.Fprintf(out, "; %d refused\n", failed)
	if failed > 0 && written == 0 {
		return errors.New("no voucher obtained")
	}
	return nil
}

func firstExpiry(ps []registrar.Prefetched) time.Time {
	var t time.Time
	for _, p := range ps {
		if p.Error == "" && (t.IsZero() || p.ExpiresOn.Before(t)) {
			t = p.ExpiresOn
		}
	}
	return t
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// manufacturerMASA: embark manufacturer masa NAME [URL] [--masa-ca FILE].
func manufacturerMASA(ctx context.Context, data, name, masaURL, caFile string, out io.Writer) error {
	cl, done, err := connect(ctx, data)
	if err != nil {
		return err
	}
	defer done()
	path := "/v1/manufacturers/" + url.PathEscape(name) + "/masa"
	var s registrar.MASASetting
	if masaURL == "" {
		if err := cl.Do(ctx, http.MethodGet, path, nil, &s); err != nil {
			return err
		}
	} else {
		req := admin.MASARequest{URL: masaURL}
		if caFile != "" {
			b, err := os.ReadFile(caFile)
			if err != nil {
				return err
			}
			req.CA = string(b)
		}
		body, err := json.Marshal(req)
		if err != nil {
			return err
		}
		if err := cl.Do(ctx, http.MethodPut, path, body, &s); err != nil {
			return err
		}
		fmt.Fprintf(out, "registered this Embark's domain with the MASA of %s\n", name)
	}
	fmt.Fprintf(out, "manufacturer  %s\nMASA          %s\nregistered    %s\nowner key     %s\ndomain CA     sha256:%s\ndevices       %d sold to this owner\nlink          %s\n",
		s.Manufacturer, s.URL, s.RegisteredAt.Format(time.RFC3339), s.OwnerKey, s.DomainCASHA256, s.Devices, s.TLS)
	return nil
}
