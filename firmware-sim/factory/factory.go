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
	// OwnerKey is the KeyID of the owner's hybrid key (embark's owner.pub),
	// written as the manifest's owner_key of the new devices: ownership
	// transfers then start from that key rather than from the name.
	OwnerKey string
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
	if prev != nil {
		defer prev.Close()
	}
	if !reused {
		if auth, err = newAuthority(o.Manufacturer, now); err != nil {
			return nil, err
		}
	}
	revision := o.Revision
	switch {
	case revision == 0 && prev != nil:
		revision = prev.Header().Revision + 1
	case revision == 0:
		revision = 1
	case prev != nil && revision <= prev.Header().Revision:
		return nil, fmt.Errorf("%w: revision %d is not above the existing manifest's %d", ErrOptions, revision, prev.Header().Revision)
	}
	if o.Count == 0 && prev == nil {
		return nil, fmt.Errorf("%w: no devices to list", ErrOptions)
	}

	// The manifest is built one entry at a time in a temporary file: the
	// earlier devices as they were, then the new ones as they are minted.
	mw, err := manifest.NewWriter(o.Out, manifest.Header{Manufacturer: auth.manufacturer, Revision: revision, IssuedAt: now})
	if err != nil {
		return nil, err
	}
	defer mw.Close()
	next := 1
	if prev != nil {
		if err := prev.Entries(func(_ int, e manifest.Entry) error {
			next = max(next, nextIndex(e.Serial, o.SerialPrefix))
			return mw.Add(e)
		}); err != nil {
			return nil, err
		}
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
	minted, err := mint(ctx, auth, &o, now, next, devices.f, mw.Add)
	if err != nil {
		return nil, err
	}
	if err := devices.finish(); err != nil {
		return nil, err
	}

	env, err := createPending(filepath.Join(o.Out, ManifestFile), 0o644)
	if err != nil {
		return nil, err
	}
	defer env.discard()
	bw := bufio.NewWriterSize(env.f, 256<<10)
	if _, err := mw.SignTo(bw, auth.signer); err != nil {
		return nil, err
	}
	if err := bw.WriteByte('\n'); err != nil {
		return nil, err
	}
	if err := bw.Flush(); err != nil {
		return nil, fmt.Errorf("write %s: %w", ManifestFile, err)
	}
	if err := env.finish(); err != nil {
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

	vouchers, err := prepareVoucherFiles(o.Out, auth, now)
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
	if err := vouchers.write(o.Out); err != nil {
		return nil, err
	}
	if err := devices.commit(); err != nil {
		return nil, err
	}
	if err := env.commit(); err != nil {
		return nil, err
	}
	if err := syncDir(o.Out); err != nil {
		return nil, err
	}

	res := &Result{
		Dir:           o.Out,
		Manufacturer:  auth.manufacturer,
		Devices:       minted.count,
		Total:         mw.Len(),
		Revision:      revision,
		ReusedCA:      reused,
		ManifestKeyID: auth.signer.Public().KeyID(),
		Elapsed:       o.Clock().Sub(start),
		FirstSerial:   minted.first,
		LastSerial:    minted.last,
	}
	return res, nil
}

// loadExisting checks the manifest already in dir against auth and
// devices.jsonl and returns it, or nil if there is none. The caller closes
// it.
func loadExisting(dir string, auth *authority) (*manifest.Stream, error) {
	mPath, dPath := filepath.Join(dir, ManifestFile), filepath.Join(dir, DevicesFile)
	f, err := os.Open(mPath)
	if errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(dPath); err == nil {
			return nil, fmt.Errorf("%w: %s without %s", ErrInconsistent, DevicesFile, ManifestFile)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if auth == nil {
		return nil, fmt.Errorf("%w: %s without a manufacturer CA", ErrInconsistent, ManifestFile)
	}
	pub := auth.signer.Public()
	m, err := manifest.VerifyReader(f, func(id string) (*hybridsig.PublicKey, bool) { return pub, id == pub.KeyID() },
		manifest.WithTempDir(dir))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInconsistent, ManifestFile, err)
	}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	if h := m.Header(); h.Manufacturer != auth.manufacturer {
		return nil, fmt.Errorf("%w: %s is for %q, the CA for %q", ErrInconsistent, ManifestFile, h.Manufacturer, auth.manufacturer)
	}
	serials, err := readSerials(dPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s without %s", ErrInconsistent, ManifestFile, DevicesFile)
		}
		return nil, err
	}
	if len(serials) != m.Len() {
		return nil, fmt.Errorf("%w: %s lists %d devices, %s %d", ErrInconsistent, DevicesFile, len(serials), ManifestFile, m.Len())
	}
	if err := m.Entries(func(i int, e manifest.Entry) error {
		if e.Serial != serials[i] {
			return fmt.Errorf("%w: line %d of %s is %q, device %d of %s %q",
				ErrInconsistent, i+1, DevicesFile, serials[i], i, ManifestFile, e.Serial)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	ok = true
	return m, nil
}

// nextIndex returns the number after serial if it is "<prefix><digits>",
// or 1.
func nextIndex(serial, prefix string) int {
	rest, ok := strings.CutPrefix(serial, prefix)
	if !ok || rest == "" || strings.TrimLeft(rest, "0123456789") != "" {
		return 1
	}
	n, err := strconv.Atoi(rest)
	if err != nil {
		return 1
	}
	return n + 1
}

// mintedRange says what mint made.
type mintedRange struct {
	count       int
	first, last string // serials
}

// mint makes o.Count devices numbered from first, writes their lines to w
// and hands their manifest entries to add, both in order.
func mint(ctx context.Context, auth *authority, o *Options, now time.Time, first int, w io.Writer,
	add func(manifest.Entry) error) (mintedRange, error) {
	var out mintedRange
	if o.Count == 0 {
		return out, nil
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
		OwnerKey:        o.OwnerKey,
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
			if err := add(m.entry); err != nil {
				firstErr = err
				cancel()
				break
			}
			if done == 0 {
				out.first = m.entry.Serial
			}
			out.last = m.entry.Serial
			done++
			if o.Progress != nil {
				o.Progress(done, o.Count)
			}
		}
	}
	if firstErr != nil {
		return out, firstErr
	}
	if done != o.Count {
		if err := context.Cause(ctx); err != nil {
			return out, err
		}
		return out, fmt.Errorf("minted %d of %d devices", done, o.Count)
	}
	if err := bw.Flush(); err != nil {
		return out, err
	}
	out.count = done
	return out, nil
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
