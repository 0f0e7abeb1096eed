package fleet

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/devattr"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/mqttwire"
)

// Phase names.
const (
	PhaseCrts   = "crts"
	PhaseEnroll = "enroll"
	PhaseRenew  = "renew"
	// PhaseConnect is the ceiling pass over MQTT: connect and publish.
	PhaseConnect = "connect"
	// PhaseStay keeps the devices connected and following commands.
	PhaseStay = "stay"
)

// Run runs the fleet described by o and returns a report per phase, in the
// order they ran. It returns an error when the run could not start or was
// canceled (with the reports of the phases that finished); devices that
// fail are counted in the reports, not returned as an error.
func Run(ctx context.Context, o Options) ([]Report, error) {
	return runTweaked(ctx, o, nil)
}

// runTweaked is Run; tweak, if set, adjusts the runner before it starts
// (tests replace its waits).
func runTweaked(ctx context.Context, o Options, tweak func(*runner)) ([]Report, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	var root *x509.Certificate
	if !o.zeroTouch() {
		if root, err = loadRoot(o.RootFile); err != nil {
			return nil, err
		}
	}
	devs, err := loadDevices(o.FactoryDir, o.Count)
	if err != nil {
		return nil, err
	}
	if o.Transport == TransportMQTT {
		manufacturer, err := manufacturerOf(o.FactoryDir)
		if err != nil {
			return nil, err
		}
		for _, d := range devs {
			d.id = device.ID(manufacturer, d.serial)
		}
	}
	if o.FirmwareVersion != "" {
		// Devices running other firmware than the factory installed.
		for _, d := range devs {
			d.firmware = devattr.Reported{FirmwareVersion: o.FirmwareVersion}
		}
	}
	if err := prepare(ctx, devs, o.Renew); err != nil {
		return nil, err
	}
	r := newRunner(o, root)
	if o.zeroTouch() || o.Mode == ModeCompare {
		if err := r.prepareZeroTouch(devs); err != nil {
			return nil, err
		}
	}
	if tweak != nil {
		tweak(r)
	}
	if o.Transport == TransportCoAP && root != nil {
		// Over MQTT the intermediates come with every certificate issued.
		if err := r.fetchCACerts(ctx, devs[0]); err != nil {
			return nil, err
		}
	}
	reports, err := r.run(ctx, devs)
	if o.StateFile != "" {
		if serr := WriteState(o.StateFile, stateOf(devs, r.intermediates)); serr != nil {
			return reports, errors.Join(err, serr)
		}
	}
	return reports, err
}

// loadRoot reads the Embark root from a PEM file. The file must hold
// exactly one certificate, and it must be a CA.
func loadRoot(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRoot, err)
	}
	var root *x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if root != nil {
			return nil, fmt.Errorf("%w: %s holds more than one certificate", ErrRoot, path)
		}
		if root, err = x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrRoot, path, err)
		}
	}
	if root == nil {
		return nil, fmt.Errorf("%w: %s holds no PEM certificate", ErrRoot, path)
	}
	if !root.IsCA {
		return nil, fmt.Errorf("%w: %s: %q is not a CA", ErrRoot, path, root.Subject)
	}
	return root, nil
}

// runner holds what the devices of a run share.
type runner struct {
	o     Options
	root  *x509.Certificate
	roots *x509.CertPool

	// intermediates come from the crts answer fetched at the start:
	// every certificate there except the root. Over MQTT, inters grows
	// with the intermediates of the answers, each verified once.
	intermediates [][]byte
	interPool     *x509.CertPool
	interMu       sync.RWMutex
	inters        []*x509.Certificate

	// verifier checks what Embark signs over MQTT, for every device.
	verifier *mqttwire.Verifier
	log      *slog.Logger

	// anchors are the firmware's voucher anchors (zero touch).
	anchors []*x509.Certificate

	// rand draws jitter and losses; it is safe for concurrent use.
	rand func() float64
	// now reads the clock.
	now func() time.Time
	// wait sleeps before a resend; false when ctx ended first.
	wait func(ctx context.Context, d time.Duration) bool
	// progressEvery is the interval between progress lines.
	progressEvery time.Duration
	// stayWait waits out the stay; false when ctx ended first.
	stayWait func(ctx context.Context, d time.Duration) bool
}

func newRunner(o Options, root *x509.Certificate) *runner {
	roots := x509.NewCertPool()
	if root != nil {
		roots.AddCert(root)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &runner{
		o:             o,
		root:          root,
		roots:         roots,
		interPool:     x509.NewCertPool(),
		log:           log,
		rand:          rand.Float64,
		now:           time.Now,
		wait:          sleep,
		stayWait:      sleep,
		progressEvery: time.Second,
	}
	r.verifier = mqttwire.NewVerifier(roots, func() time.Time { return r.now() })
	return r
}

func (r *runner) config(cert *tls.Certificate) estclient.Config {
	return estclient.Config{
		Target:      r.o.Target,
		Roots:       r.roots,
		Certificate: cert,
		Timeout:     r.o.Timeout,
	}
}

// fetchCACerts gets the CA certificates once, with the first device's
// IDevID, and keeps the intermediates that chain to the root.
func (r *runner) fetchCACerts(ctx context.Context, d *simDevice) error {
	var certs []*x509.Certificate
	out := r.device(ctx, func(ctx context.Context) (*x509.Certificate, error) {
		cl, err := estclient.Dial(ctx, r.config(&d.idevid))
		if err != nil {
			return nil, err
		}
		defer cl.Close()
		certs, err = cl.CACerts(ctx)
		return nil, err
	})
	if out.err != nil {
		return fmt.Errorf("%w: %w", ErrCACerts, out.err)
	}
	for _, c := range certs {
		if c.Equal(r.root) {
			continue
		}
		if _, err := c.Verify(x509.VerifyOptions{Roots: r.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			continue
		}
		r.intermediates = append(r.intermediates, c.Raw)
		r.interPool.AddCert(c)
		r.inters = append(r.inters, c)
	}
	if len(r.intermediates) == 0 {
		return fmt.Errorf("%w: no intermediate in the answer chains to the root %q", ErrCACerts, r.root.Subject)
	}
	return nil
}

// run runs the phases the options ask for.
func (r *runner) run(ctx context.Context, devs []*simDevice) ([]Report, error) {
	var reports []Report
	var ceiling float64
	var ceilingPhase string
	if r.o.zeroTouch() || r.o.Mode == ModeCompare {
		rep, err := r.runVoucher(ctx, devs)
		reports = append(reports, rep...)
		if err != nil {
			return reports, err
		}
	} else if r.o.Mode == ModeCrts || r.o.Mode == ModeBoth {
		spec := r.crtsPhase()
		if r.o.Transport == TransportMQTT {
			spec = r.connectPhase()
		}
		rep := r.phase(ctx, spec, devs)
		reports = append(reports, rep)
		ceiling, ceilingPhase = rep.PerSecond, rep.Phase
		if err := ctx.Err(); err != nil {
			return reports, err
		}
	}
	if !r.o.zeroTouch() && r.o.Mode != ModeCompare && (r.o.Mode == ModeEnroll || r.o.Mode == ModeBoth) {
		spec := r.enrollPhase()
		if r.o.Transport == TransportMQTT {
			spec = r.mqttEnrollPhase()
		}
		rep := r.phase(ctx, spec, devs)
		if ceiling > 0 {
			rep.OfCeiling, rep.Ceiling = rep.PerSecond/ceiling, ceilingPhase
		}
		reports = append(reports, rep)
		if err := ctx.Err(); err != nil {
			return reports, err
		}
	}
	if r.o.Renew {
		spec := r.renewPhase()
		if r.o.Transport == TransportMQTT {
			spec = r.mqttRenewPhase()
		}
		reports = append(reports, r.phase(ctx, spec, enrolled(devs)))
		if err := ctx.Err(); err != nil {
			return reports, err
		}
	}
	if r.o.Stay > 0 {
		reports = append(reports, r.stay(ctx, enrolled(devs)))
		if err := ctx.Err(); err != nil {
			return reports, err
		}
	}
	return reports, nil
}

// enrolled are the devices that hold an LDevID.
func enrolled(devs []*simDevice) []*simDevice {
	var out []*simDevice
	for _, d := range devs {
		if d.ldevid != nil {
			out = append(out, d)
		}
	}
	return out
}

// phaseSpec is what one phase does for one device.
type phaseSpec struct {
	name string
	// attempt is one try: connect, request, close. It returns the
	// certificate issued, if the phase issues one.
	attempt func(ctx context.Context, d *simDevice) (*x509.Certificate, error)
	// verify checks an answer after the clock stopped; nil accepts all.
	verify func(d *simDevice, cert *x509.Certificate) error
	// commit keeps a verified answer.
	commit func(d *simDevice, cert *x509.Certificate)
}

func (r *runner) crtsPhase() phaseSpec {
	return phaseSpec{
		name: PhaseCrts,
		attempt: func(ctx context.Context, d *simDevice) (*x509.Certificate, error) {
			cl, err := estclient.Dial(ctx, r.config(&d.idevid))
			if err != nil {
				return nil, err
			}
			defer cl.Close()
			certs, err := cl.CACerts(ctx)
			if err != nil {
				return nil, err
			}
			for _, c := range certs {
				if c.Equal(r.root) {
					return nil, nil
				}
			}
			return nil, ErrBadCACerts
		},
	}
}

func (r *runner) enrollPhase() phaseSpec {
	return phaseSpec{
		name: PhaseEnroll,
		attempt: func(ctx context.Context, d *simDevice) (*x509.Certificate, error) {
			cl, err := estclient.Dial(ctx, r.config(&d.idevid))
			if err != nil {
				return nil, err
			}
			defer cl.Close()
			return cl.Enroll(ctx, d.enrollCSR)
		},
		verify: func(d *simDevice, cert *x509.Certificate) error {
			return r.verifyIssued(d.enrollKey, cert)
		},
		commit: func(d *simDevice, cert *x509.Certificate) {
			d.ldevid, d.ldevidKey = cert, d.enrollKey
		},
	}
}

func (r *runner) renewPhase() phaseSpec {
	return phaseSpec{
		name: PhaseRenew,
		attempt: func(ctx context.Context, d *simDevice) (*x509.Certificate, error) {
			cert := d.clientCert(r.intermediates)
			cl, err := estclient.Dial(ctx, r.config(&cert))
			if err != nil {
				return nil, err
			}
			defer cl.Close()
			return cl.Reenroll(ctx, d.renewCSR)
		},
		verify: func(d *simDevice, cert *x509.Certificate) error {
			return r.verifyIssued(d.renewKey, cert)
		},
		commit: func(d *simDevice, cert *x509.Certificate) {
			d.ldevid, d.ldevidKey = cert, d.renewKey
		},
	}
}

// verifyIssued checks that cert carries key's public key, names a device
// and was signed by an intermediate that chains to the Embark root. The
// intermediates were verified against the root once, at the start (a device
// keeps them from /crts), so each certificate costs one signature check.
func (r *runner) verifyIssued(key *ecdsa.PrivateKey, cert *x509.Certificate) error {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return ErrKeyMismatch
	}
	now := r.now()
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("%w: outside its validity", ErrUntrustedCert)
	}
	if cert.IsCA || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("%w: not a device certificate (CA, or no client auth)", ErrUntrustedCert)
	}
	var lastErr error = fmt.Errorf("%w: issuer %q is not a verified intermediate", ErrUntrustedCert, cert.Issuer)
	r.interMu.RLock()
	inters := r.inters
	r.interMu.RUnlock()
	for _, in := range inters {
		if !bytes.Equal(cert.RawIssuer, in.RawSubject) {
			continue
		}
		if err := cert.CheckSignatureFrom(in); err != nil {
			lastErr = fmt.Errorf("%w: %w", ErrUntrustedCert, err)
			continue
		}
		return nil
	}
	return lastErr
}

// outcome is how one device fared in one phase.
type outcome struct {
	cert    *x509.Certificate
	err     error
	latency time.Duration
	retries int
}

// device runs one device's operation with retries: after a 5.03 it waits
// Max-Age plus jitter, after a transport failure or a lost answer a
// jittered exponential backoff; other errors are final. An answer that
// was lost must come back the same when the request is resent.
func (r *runner) device(ctx context.Context, attempt func(context.Context) (*x509.Certificate, error)) outcome {
	var lost *x509.Certificate
	for n := 0; ; n++ {
		cert, err := attempt(ctx)
		if (err == nil || isAnswer(err)) && r.o.Loss > 0 && r.rand() < r.o.Loss {
			if err == nil && lost == nil {
				lost = cert
			}
			err = ErrResponseLost
		}
		if err == nil {
			if lost != nil && cert != nil && !lost.Equal(cert) {
				return outcome{err: ErrNotIdempotent, retries: n}
			}
			return outcome{cert: cert, retries: n}
		}
		if cerr := ctx.Err(); cerr != nil {
			return outcome{err: cerr, retries: n}
		}
		wait, again := r.retryAfter(ctx, err, n)
		if !again || n >= r.o.Retries {
			return outcome{err: err, retries: n}
		}
		if !r.wait(ctx, wait) {
			return outcome{err: ctx.Err(), retries: n}
		}
	}
}

// retryAfter says whether err is worth resending the same request after
// resend n, and after how long.
func (r *runner) retryAfter(ctx context.Context, err error, n int) (time.Duration, bool) {
	if ctx.Err() != nil {
		return 0, false
	}
	var se *estclient.StatusError
	if errors.As(err, &se) {
		if se.Retryable() {
			return maxAgeWait(se.MaxAge, r.rand()), true
		}
		return 0, false
	}
	var me *mqttclient.StatusError
	if errors.As(err, &me) {
		if me.Retryable() {
			return maxAgeWait(me.RetryAfter, r.rand()), true
		}
		return 0, false
	}
	var ce *mqttclient.ConnectError
	if errors.As(err, &ce) {
		return backoff(n, r.rand()), ce.Retryable()
	}
	if errors.Is(err, ErrResponseLost) {
		return backoff(n, r.rand()), true
	}
	switch reasonOf(err) {
	case ReasonTimeout, ReasonHandshake, ReasonTransport:
		return backoff(n, r.rand()), true
	}
	return 0, false
}

// isAnswer reports whether err is an answer of the server (a status),
// which the loss simulation may drop like a success.
func isAnswer(err error) bool {
	var se *estclient.StatusError
	var me *mqttclient.StatusError
	return errors.As(err, &se) || errors.As(err, &me)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// phase runs spec for every device, at most Concurrency at a time, paced
// by Rate, and reports.
func (r *runner) phase(ctx context.Context, spec phaseSpec, devs []*simDevice) Report {
	outs := make([]outcome, len(devs))
	started := make([]bool, len(devs))
	var done, failed atomic.Int64

	type job struct {
		i  int
		at time.Time
	}
	jobs := make(chan job)
	start := r.now()
	go func() {
		defer close(jobs)
		for i := range devs {
			j := job{i: i}
			if r.o.Rate > 0 {
				j.at = start.Add(time.Duration(float64(i) / r.o.Rate * float64(time.Second)))
				if !sleep(ctx, j.at.Sub(r.now())) {
					return
				}
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()

	stopProgress := r.progress(spec.name, len(devs), &done, &failed)
	var wg sync.WaitGroup
	for range min(r.o.Concurrency, len(devs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				t0 := j.at
				if t0.IsZero() {
					t0 = r.now()
				}
				d := devs[j.i]
				out := r.device(ctx, func(ctx context.Context) (*x509.Certificate, error) {
					return spec.attempt(ctx, d)
				})
				if out.err == nil && spec.verify != nil {
					// The device checks what it got before it counts as
					// done: inside the clock, as a real device would.
					if out.cert == nil {
						out.err = fmt.Errorf("%w: no certificate", estclient.ErrResponse)
					} else {
						out.err = spec.verify(d, out.cert)
					}
				}
				out.latency = r.now().Sub(t0)
				outs[j.i], started[j.i] = out, true
				done.Add(1)
				if out.err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	rep := Report{Phase: spec.name, Devices: len(devs), Failed: map[string]int{}, Duration: r.now().Sub(start)}

	for i := range outs {
		if !started[i] {
			outs[i].err = ctx.Err()
			if outs[i].err == nil {
				outs[i].err = context.Canceled
			}
		}
	}

	latencies := make([]time.Duration, 0, len(outs))
	for i, out := range outs {
		rep.Retries += out.retries
		if out.err != nil {
			rep.Failed[reasonOf(out.err)]++
			continue
		}
		rep.OK++
		latencies = append(latencies, out.latency)
		if spec.commit != nil {
			spec.commit(devs[i], out.cert)
		}
	}
	rep.summarize(latencies)
	finished := int(done.Load())
	rate := 0.0
	if rep.Duration > 0 {
		rate = float64(finished) / rep.Duration.Seconds()
	}
	stopProgress(progressLine(spec.name, finished, len(devs), rate, rep.FailedCount()))
	return rep
}

// progress writes a line every progressEvery until the returned function
// is called, which writes the closing line it is given.
func (r *runner) progress(phase string, total int, done, failed *atomic.Int64) func(closing string) {
	last, lastAt := int64(0), r.now()
	return r.ticker(func(now time.Time) string {
		n := done.Load()
		rate := 0.0
		if dt := now.Sub(lastAt).Seconds(); dt > 0 {
			rate = float64(n-last) / dt
		}
		last, lastAt = n, now
		return progressLine(phase, int(n), total, rate, int(failed.Load()))
	})
}

// ticker writes line() to the progress writer every progressEvery until
// the returned function is called, which writes the closing line it is
// given. line runs on one goroutine.
func (r *runner) ticker(line func(now time.Time) string) func(closing string) {
	w := r.o.Progress
	if w == nil {
		return func(string) {}
	}
	stop := make(chan string)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(r.progressEvery)
		defer t.Stop()
		for {
			select {
			case closing := <-stop:
				_, _ = io.WriteString(w, closing)
				return
			case now := <-t.C:
				_, _ = io.WriteString(w, line(now))
			}
		}
	}()
	return func(closing string) {
		stop <- closing
		<-finished
	}
}
