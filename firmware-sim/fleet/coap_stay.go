package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
)

// stayKeepAlive is how often a staying CoAP device pings its session:
// well inside the server's idle timeout (two minutes for Embark), and soon
// enough to notice a server that went away.
const stayKeepAlive = 30 * time.Second

// stayDeviceCoAP is stayDevice over CoAP: the device holds a session with
// its LDevID and observes its status resource (RFC 7641), following each
// new generation: rotate (renew at sren with a new key over the session,
// then a new session with the new LDevID), revoked (forget the LDevID and
// stop), zone (remember it); each generation once, reported applied on the
// resource. A final notification "revoked" (the server cut the session of
// a revoked certificate) also stops it. A device whose session ends
// reconnects with backoff while the stay lasts.
func (r *runner) stayDeviceCoAP(ctx, stop context.Context, d *simDevice, at time.Time, sem chan struct{}, counts *stayCounts) stayOutcome {
	var out stayOutcome
	if !at.IsZero() && !sleep(stop, at.Sub(r.now())) {
		return out
	}
	fail := func(err error) {
		if stop.Err() != nil && errors.Is(err, context.Canceled) {
			return // the end of the stay is no failure
		}
		out.err = err
	}
	var since time.Time // when the generation being applied arrived
	for failures := 0; stop.Err() == nil; {
		if failures > 0 && !r.wait(stop, backoff(failures-1, r.rand())) {
			break
		}
		cl, obs, err := r.stayObserve(ctx, stop, d, sem)
		if err != nil {
			fail(err)
			var se *estclient.StatusError
			if errors.As(err, &se) && !se.Retryable() {
				if estclient.IsRevoked(err) {
					r.forget(d, counts, &out)
				}
				break // refused: trying again changes nothing
			}
			failures++
			continue
		}
		counts.connected.Add(1)
		err = r.follow(ctx, stop, d, cl, obs, sem, counts, &out, &since)
		counts.connected.Add(-1)
		_ = cl.Close()
		if d.ldevid == nil {
			out.revoked = true
			break
		}
		if err != nil {
			fail(err)
			failures++
		} else {
			failures = 0 // a rotation: back at once with the new LDevID
		}
		if out.connected || stop.Err() != nil {
			break
		}
		counts.reconnects.Add(1)
	}
	return out
}

// forget drops the device's LDevID: it was told it is revoked.
func (r *runner) forget(d *simDevice, counts *stayCounts, out *stayOutcome) {
	d.ldevid, d.ldevidKey, d.ldevidChain = nil, nil, nil
	d.rotateKey, d.rotateCSR = nil, nil
	out.revoked = true
	counts.revoked.Add(1)
}

// stayObserve opens a session with the device's current LDevID and
// registers its observation of the status resource.
func (r *runner) stayObserve(ctx, stop context.Context, d *simDevice, sem chan struct{}) (*estclient.Client, *estclient.StatusObservation, error) {
	select {
	case sem <- struct{}{}:
	case <-stop.Done():
		return nil, nil, stop.Err()
	}
	defer func() { <-sem }()
	cert := d.clientCert(r.intermediates)
	cl, err := estclient.Dial(ctx, r.config(&cert))
	if err != nil {
		return nil, nil, err
	}
	obs, err := cl.ObserveStatus(ctx, stayKeepAlive)
	if err != nil {
		_ = cl.Close()
		return nil, nil, err
	}
	return cl, obs, nil
}

// follow follows the status documents of obs until stop ends (the device
// is then still connected), the observation ends, the device rotated its
// LDevID (nil: reconnect with the new one) or was revoked (nil, and its
// LDevID is gone), or applying a generation failed.
func (r *runner) follow(ctx, stop context.Context, d *simDevice, cl *estclient.Client, obs *estclient.StatusObservation,
	sem chan struct{}, counts *stayCounts, out *stayOutcome, since *time.Time) error {
	report := func() error {
		if _, err := cl.ReportApplied(ctx, d.applied); err != nil {
			return fmt.Errorf("report: %w", err)
		}
		d.reported = d.applied
		counts.applied.Add(1)
		if !since.IsZero() {
			out.latencies = append(out.latencies, r.now().Sub(*since))
			*since = time.Time{}
		}
		return nil
	}
	if d.reported < d.applied {
		// Applied before this session (a rotation), not reported yet.
		if err := report(); err != nil {
			return err
		}
	}
	atEnd := func() error {
		select {
		case <-obs.Done():
			return obs.Err()
		default:
			out.connected = true
			return nil
		}
	}
	for {
		if stop.Err() != nil {
			return atEnd()
		}
		select {
		case <-stop.Done():
			return atEnd()
		case <-obs.Done():
			err := obs.Err()
			if estclient.IsRevoked(err) {
				// The server's last word before it cut the session.
				r.forget(d, counts, out)
				return nil
			}
			return err
		case st := <-obs.Updates():
			if st.Generation <= d.applied {
				continue // applied already: every session starts with the current document
			}
			if since.IsZero() {
				*since = r.now()
			}
			out.seen = max(out.seen, st.Generation)
			if st.Zone != "" {
				d.zone = st.Zone
			}
			switch {
			case st.Revoked:
				d.applied, d.reported = st.Generation, st.Generation
				r.forget(d, counts, out)
				counts.applied.Add(1)
				out.latencies = append(out.latencies, r.now().Sub(*since))
				*since = time.Time{}
				return nil
			case st.Rotate:
				if err := r.rotateCoAP(ctx, stop, d, cl, sem, counts); err != nil {
					if stop.Err() != nil && errors.Is(err, context.Canceled) {
						return atEnd() // the stay ended before the rotation could
					}
					return err
				}
				d.applied = st.Generation
				return nil // a new session with the new LDevID, and report there
			}
			d.applied = st.Generation
			if err := report(); err != nil {
				return err
			}
		}
	}
}

// rotateCoAP renews the device's LDevID with a new key at sren over the
// session. The key and CSR are kept until the renewal succeeds, so that a
// resend after a lost answer gets the certificate already issued.
func (r *runner) rotateCoAP(ctx, stop context.Context, d *simDevice, cl *estclient.Client, sem chan struct{}, counts *stayCounts) error {
	select {
	case sem <- struct{}{}:
	case <-stop.Done():
		return stop.Err()
	}
	defer func() { <-sem }()
	if d.rotateKey == nil {
		key, csr, err := newCSR(d.serial, d.firmware)
		if err != nil {
			return err
		}
		d.rotateKey, d.rotateCSR = key, csr
	}
	var cert, err = cl.Reenroll(ctx, d.rotateCSR)
	for n := 0; err != nil && n < r.o.Retries; n++ {
		var se *estclient.StatusError
		if !errors.As(err, &se) || !se.Retryable() {
			break
		}
		counts.retries.Add(1)
		if !r.wait(stop, maxAgeWait(se.MaxAge, r.rand())) {
			return stop.Err()
		}
		cert, err = cl.Reenroll(ctx, d.rotateCSR)
	}
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if err := r.verifyIssued(d.rotateKey, cert); err != nil {
		return err
	}
	d.ldevid, d.ldevidKey = cert, d.rotateKey
	d.rotateKey, d.rotateCSR = nil, nil
	counts.rotations.Add(1)
	return nil
}
