package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
)

func cmdFactory(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("factory", flag.ContinueOnError)
	var o factory.Options
	var quiet bool
	fs.IntVar(&o.Count, "count", 0, "devices to mint (0 on an existing directory: a new manifest revision only)")
	fs.StringVar(&o.Out, "out", "", "output directory (required)")
	fs.StringVar(&o.Manufacturer, "manufacturer", "", `manufacturer name (default "acme", or the directory's)`)
	fs.StringVar(&o.Owner, "owner", "", `owner of the new devices (default "example-operator")`)
	ownerKey := fs.String("owner-key", "", "the buyer's owner public key (embark's DIR/owner.pub), recorded as owner_key")
	fs.StringVar(&o.Model, "model", "", `device model (default "sensor-x")`)
	fs.StringVar(&o.HardwareRev, "hardware-rev", "", `hardware revision (default "B")`)
	fs.StringVar(&o.FirmwareVersion, "firmware-version", "", `firmware version (default "1.4.2")`)
	fs.StringVar(&o.Site, "site", "", `manufacturing site (default "plant-1")`)
	fs.StringVar(&o.SerialPrefix, "serial-prefix", "", `serial number prefix (default: the manufacturer in upper case and "-")`)
	fs.IntVar(&o.ExpiredIDevIDs, "expired", 0, "give the last N devices IDevIDs that expired a day ago")
	fs.Uint64Var(&o.Revision, "revision", 0, "manifest revision (default 1, or one more than the existing)")
	fs.IntVar(&o.Workers, "workers", 0, "devices minted in parallel (default: the number of CPUs)")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: firmware-sim factory --count N --out DIR [flags]\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	if *ownerKey != "" {
		b, err := os.ReadFile(*ownerKey)
		if err != nil {
			fmt.Fprintf(stderr, "firmware-sim factory: %v\n", err)
			return 2
		}
		k, err := hybridsig.ParsePublicKeyPEM(b)
		if err != nil {
			fmt.Fprintf(stderr, "firmware-sim factory: --owner-key %s: %v\n", *ownerKey, err)
			return 2
		}
		o.OwnerKey = k.KeyID()
	}
	if o.Out == "" {
		return usageError(stderr, fs, "--out is required")
	}
	if !quiet {
		o.Progress = progressEvery(stderr, time.Second)
	}

	res, err := factory.Run(ctx, o)
	if err != nil {
		fmt.Fprintf(stderr, "firmware-sim factory: %v\n", err)
		if errors.Is(err, factory.ErrOptions) {
			return exitUsage
		}
		return exitFailed
	}
	printFactoryResult(stdout, res)
	return exitOK
}

// progressEvery reports minting progress at most once per interval, and
// the last device always.
func progressEvery(w io.Writer, interval time.Duration) func(done, total int) {
	var mu sync.Mutex
	var last time.Time
	return func(done, total int) {
		mu.Lock()
		defer mu.Unlock()
		if now := time.Now(); now.Sub(last) >= interval || done == total {
			last = now
			fmt.Fprintf(w, "minted %d/%d\n", done, total)
		}
	}
}

func printFactoryResult(w io.Writer, res *factory.Result) {
	ca := "new manufacturer CA"
	if res.ReusedCA {
		ca = "existing manufacturer CA"
	}
	if res.Devices > 0 {
		fmt.Fprintf(w, "minted %d devices %s..%s for %s (%s) in %s\n",
			res.Devices, res.FirstSerial, res.LastSerial, res.Manufacturer, ca, res.Elapsed.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "minted no devices for %s (%s)\n", res.Manufacturer, ca)
	}
	fmt.Fprintf(w, "manifest revision %d lists %d devices, signed by key %s\n", res.Revision, res.Total, res.ManifestKeyID)
	fmt.Fprintf(w, "output in %s\n\nnext steps:\n", res.Dir)
	fmt.Fprintf(w, "  embark manufacturer trust %s\n", filepath.Join(res.Dir, "trust.json"))
	fmt.Fprintf(w, "  embark provenance import %s\n", filepath.Join(res.Dir, "manifest.json"))
	fmt.Fprintf(w, "  firmware-sim masa --factory %s --listen 127.0.0.1:8444 &\n", res.Dir)
	fmt.Fprintf(w, "  embark manufacturer masa %s https://127.0.0.1:8444\n", res.Manufacturer)
	fmt.Fprintf(w, "  firmware-sim fleet --factory %s --server coaps://127.0.0.1:5684   (zero touch; --ca EMBARK-ROOT.pem for out-of-band trust)\n", res.Dir)
}
