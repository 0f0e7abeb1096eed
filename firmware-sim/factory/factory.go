package factory

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
)

// Options says what to mint. Zero fields take the documented defaults.
type Options struct {
	// Out is the output directory, created with mode 0700 if needed.
	Out string
	// Count is how many devices to mint. It may be 0 on a directory that
	// already has devices, to issue a new manifest revision only.
	Count int
	// Manufacturer names the manufacturer (default "acme", or the existing
	// one when Out already holds a manufacturer; another name is refused).
	Manufacturer string
	// Owner is the owner recorded for the new devices (default
	// "example-operator").
	Owner string
	// Model, HardwareRev and FirmwareVersion describe the new devices
	// (defaults "sensor-x", "B", "1.4.2").
	Model, HardwareRev, FirmwareVersion string
	// Site is where the new devices are made (default "plant-1").
	Site string
	// SerialPrefix starts serial numbers, which go on with six or more
	// digits (default: the manufacturer in upper case and "-", so "ACME-"
	// gives ACME-000001, ACME-000002, ...).
	SerialPrefix string
	// Revision is the manifest revision (default 1, or one more than the
	// existing manifest's). It must be above the existing manifest's.
	Revision uint64
	// ExpiredIDevIDs gives the last n devices of this run IDevIDs that
	// expired a day ago; the others never expire (99991231235959Z).
	ExpiredIDevIDs int
	// Clock returns the current time (default time.Now).
	Clock func() time.Time
	// Workers is how many devices are minted in parallel (default
	// runtime.NumCPU()).
	Workers int
	// Progress, if set, is called after each device is minted with the
	// number done and the number to do, from one goroutine at a time.
	Progress func(done, total int)
}

// Result says what a run made.
type Result struct {
	// Dir is the output directory.
	Dir          string
	Manufacturer string
	// Devices is how many devices this run minted; Total how many the
	// manifest lists.
	Devices, Total int
	// FirstSerial and LastSerial are those of this run's devices.
	FirstSerial, LastSerial string
	Revision                uint64
	// ReusedCA is true if the directory already held the manufacturer CA.
	ReusedCA bool
	// ManifestKeyID is the KeyID of the manifest signing key.
	ManifestKeyID string
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
}

func (o *Options) defaults(existing string) error {
	if o.Out == "" {
		return fmt.Errorf("%w: no output directory", ErrOptions)
	}
	if o.Count < 0 || o.ExpiredIDevIDs < 0 || o.ExpiredIDevIDs > o.Count {
		return fmt.Errorf("%w: count %d, expired IDevIDs %d", ErrOptions, o.Count, o.ExpiredIDevIDs)
	}
	if o.Workers < 0 {
		return fmt.Errorf("%w: workers %d", ErrOptions, o.Workers)
	}
	if o.Manufacturer == "" {
		o.Manufacturer = existing
	}
	if o.Manufacturer == "" {
		o.Manufacturer = "acme"
	}
	if !manifest.ValidName(o.Manufacturer) {
		return fmt.Errorf("%w: manufacturer %q: want [a-z0-9][a-z0-9.-]{0,62}", ErrOptions, o.Manufacturer)
	}
	if existing != "" && o.Manufacturer != existing {
		return fmt.Errorf("%w: %s belongs to manufacturer %q, not %q", ErrOptions, o.Out, existing, o.Manufacturer)
	}
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&o.Owner, "example-operator")
	set(&o.Model, "sensor-x")
	set(&o.HardwareRev, "B")
	set(&o.FirmwareVersion, "1.4.2")
	set(&o.Site, "plant-1")
	set(&o.SerialPrefix, strings.ToUpper(o.Manufacturer)+"-")
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Workers == 0 {
		o.Workers = runtime.NumCPU()
	}
	return nil
}

// Run mints o.Count devices and the manifest that lists them into o.Out,
// creating the manufacturer CA there or reusing the one found. Nothing in
// o.Out changes if Run fails before writing; files are replaced atomically.
func Run(ctx context.Context, o Options) (*Result, error) {
	res, err := run(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("factory: %w", err)
	}
	return res, nil
}

func run(ctx context.Context, o Options) (*Result, error) {
	if o.Out == "" {
		return nil, fmt.Errorf("%w: no output directory", ErrOptions)
	}
	if err := os.MkdirAll(o.Out, 0o700); err != nil {
		return nil, err
	}
	auth, reused, err := loadAuthority(o.Out)
	if err != nil {
		return nil, err
	}
	existingName := ""
	if reused {
		existingName = auth.manufacturer
	}
	if err := o.defaults(existingName); err != nil {
		return nil, err
	}
	start := o.Clock()
	now := start.UTC().Truncate(time.Second)

	prev, err := loadExisting(o.Out, auth)
	if err != nil {
		return nil, err
	}
	if !reused {
		if auth, err = newAuthority(o.Manufacturer, now); err != nil {
			return nil, err
		}
	}
	revision := o.Revision
	switch {
	case revision == 0 && prev != nil:
		revision = prev.Revision + 1
	case revision == 0:
		revision = 1
	case prev != nil && revision <= prev.Revision:
		return nil, fmt.Errorf("%w: revision %d is not above the existing manifest's %d", ErrOptions, revision, prev.Revision)
	}
	var entries []manifest.Entry
	if prev != nil {
		entries = prev.Devices
	}
	if o.Count == 0 && len(entries) == 0 {
		return nil, fmt.Errorf("%w: no devices to list", ErrOptions)
	}

	devices, err := createPending(filepath.Join(o.Out, DevicesFile), 0o600)
	if err != nil {
		return nil, err
	}
	defer devices.discard()
	if prev != nil {
		if err := copyFile(devices.f, filepath.Join(o.Out, DevicesFile)); err != nil {
			return nil, err
		}
	}
	next := nextIndex(entries, o.SerialPrefix)
	newEntries, err := mint(ctx, auth, &o, now, next, devices.f)
	if err != nil {
		return nil, err
	}
	if err := devices.finish(); err != nil {
		return nil, err
	}
	entries = append(entries, newEntries...)

	m := &manifest.Manifest{Manufacturer: auth.manufacturer, Revision: revision, IssuedAt: now, Devices: entries}
	env, err := manifest.Sign(m, auth.signer)
	if err != nil {
		return nil, err
	}
	tb, err := manifest.NewTrustBundle(auth.manufacturer, []*x509.Certificate{auth.root}, []*x509.Certificate{auth.inter},
		[]*hybridsig.PublicKey{auth.signer.Public()})
	if err != nil {
		return nil, err
	}
	trust, err := tb.Marshal()
	if err != nil {
		return nil, err
	}

	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Commit: CA files first, then the devices, the manifest last.
	if !reused {
		data, modes, err := auth.files()
		if err != nil {
			return nil, err
		}
		for _, name := range caFiles {
			if err := writeFileAtomic(filepath.Join(o.Out, name), data[name], modes[name]); err != nil {
				return nil, err
			}
		}
	}
	if err := writeFileAtomic(filepath.Join(o.Out, TrustFile), trust, 0o644); err != nil {
		return nil, err
	}
	if err := devices.commit(); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(filepath.Join(o.Out, ManifestFile), append(env, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := syncDir(o.Out); err != nil {
		return nil, err
	}

	res := &Result{
		Dir:           o.Out,
		Manufacturer:  auth.manufacturer,
		Devices:       len(newEntries),
		Total:         len(entries),
		Revision:      revision,
		ReusedCA:      reused,
		ManifestKeyID: auth.signer.Public().KeyID(),
		Elapsed:       o.Clock().Sub(start),
	}
	if len(newEntries) > 0 {
		res.FirstSerial, res.LastSerial = newEntries[0].Serial, newEntries[len(newEntries)-1].Serial
	}
	return res, nil
}

// loadExisting returns the manifest already in dir, checked against auth and
// devices.jsonl, or nil if there is none.
func loadExisting(dir string, auth *authority) (*manifest.Manifest, error) {
	mPath, dPath := filepath.Join(dir, ManifestFile), filepath.Join(dir, DevicesFile)
	env, err := os.ReadFile(mPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(dPath); err == nil {
			return nil, fmt.Errorf("%w: %s without %s", ErrInconsistent, DevicesFile, ManifestFile)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if auth == nil {
		return nil, fmt.Errorf("%w: %s without a manufacturer CA", ErrInconsistent, ManifestFile)
	}
	pub := auth.signer.Public()
	m, err := manifest.Open(env, func(id string) (*hybridsig.PublicKey, bool) { return pub, id == pub.KeyID() })
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInconsistent, ManifestFile, err)
	}
	if m.Manufacturer != auth.manufacturer {
		return nil, fmt.Errorf("%w: %s is for %q, the CA for %q", ErrInconsistent, ManifestFile, m.Manufacturer, auth.manufacturer)
	}
	serials, err := readSerials(dPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s without %s", ErrInconsistent, ManifestFile, DevicesFile)
		}
		return nil, err
	}
	if len(serials) != len(m.Devices) {
		return nil, fmt.Errorf("%w: %s lists %d devices, %s %d", ErrInconsistent, DevicesFile, len(serials), ManifestFile, len(m.Devices))
	}
	for i, s := range serials {
		if m.Devices[i].Serial != s {
			return nil, fmt.Errorf("%w: line %d of %s is %q, device %d of %s %q",
				ErrInconsistent, i+1, DevicesFile, s, i, ManifestFile, m.Devices[i].Serial)
		}
	}
	return m, nil
}

// nextIndex returns the number after the highest serial "<prefix><digits>".
func nextIndex(entries []manifest.Entry, prefix string) int {
	next := 1
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Serial, prefix)
		if !ok || rest == "" || strings.TrimLeft(rest, "0123456789") != "" {
			continue
		}
		if n, err := strconv.Atoi(rest); err == nil && n >= next {
			next = n + 1
		}
	}
	return next
}

// mint makes o.Count devices numbered from first, writes their lines to w in
// order and returns their manifest entries.
func mint(ctx context.Context, auth *authority, o *Options, now time.Time, first int, w io.Writer) ([]manifest.Entry, error) {
	if o.Count == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	fwSum := sha256.Sum256([]byte("firmware:" + o.Manufacturer + "/" + o.Model + "/" + o.HardwareRev + "/" + o.FirmwareVersion))
	sbomRef := "urn:embark:sbom:" + o.Manufacturer + ":" + o.Model + ":" + o.FirmwareVersion
	sbomSum := sha256.Sum256([]byte("sbom:" + sbomRef))
	template := manifest.Entry{
		Model:           o.Model,
		HardwareRev:     o.HardwareRev,
		FirmwareVersion: o.FirmwareVersion,
		FirmwareSHA256:  hex.EncodeToString(fwSum[:]),
		SBOMRef:         sbomRef,
		SBOMSHA256:      hex.EncodeToString(sbomSum[:]),
		ManufacturedAt:  now,
		Site:            o.Site,
		Owner:           o.Owner,
	}
	validFrom := now.Add(-time.Hour)
	expiredFrom, expiredTo := now.AddDate(-1, 0, 0), now.AddDate(0, 0, -1)
	firstExpired := o.Count - o.ExpiredIDevIDs

	type result struct {
		i   int
		m   minted
		err error
	}
	jobs := make(chan int)
	results := make(chan result, o.Workers)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				from, to := validFrom, noExpiry
				if i >= firstExpired {
					from, to = expiredFrom, expiredTo
				}
				serial := fmt.Sprintf("%s%06d", o.SerialPrefix, first+i)
				m, err := auth.mintDevice(serial, from, to, template)
				select {
				case results <- result{i: i, m: m, err: err}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	go func() {
		defer close(jobs)
		for i := range o.Count {
			select {
			case jobs <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()

	bw := bufio.NewWriterSize(w, 256<<10)
	entries := make([]manifest.Entry, o.Count)
	pending := make(map[int]minted)
	done := 0
	var firstErr error
	for r := range results {
		if firstErr != nil {
			continue // drain
		}
		if r.err != nil {
			firstErr = r.err
			cancel()
			continue
		}
		pending[r.i] = r.m
		for {
			m, ok := pending[done]
			if !ok {
				break
			}
			delete(pending, done)
			if _, err := bw.Write(m.line); err != nil {
				firstErr = err
				cancel()
				break
			}
			entries[done] = m.entry
			done++
			if o.Progress != nil {
				o.Progress(done, o.Count)
			}
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if done != o.Count {
		if err := context.Cause(ctx); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("minted %d of %d devices", done, o.Count)
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	return entries, nil
}

func copyFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}
