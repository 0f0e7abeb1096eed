package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embark-iot/embark/firmware-sim/mqttclient"
)

// stayCounts are the live figures of a stay.
type stayCounts struct {
	connected, applied, rotations, revoked, ignored, reconnects, retries atomic.Int64
}

// stayOutcome is how one device ended its stay.
type stayOutcome struct {
	// connected: the device was connected when the stay ended.
	connected bool
	// revoked: the device was told it is revoked and dropped its LDevID.
	revoked bool
	// err is the last failure the device saw.
	err error
	// seen is the newest command generation the device took up.
	seen uint64
	// latencies run from a command's arrival to its state report.
	latencies []time.Duration
}

// stay keeps every device connected with its LDevID for Options.Stay: over
// CoAP observing its status resource (stayDeviceCoAP), over MQTT subscribed
// to its command topic, following the commands it gets: rotate
// (renew now with a new key, then reconnect with the new LDevID), revoked
// (forget the LDevID and stop), zone (remember it); each generation once,
// in order, reported on the state topic. A device that loses its
// connection reconnects with backoff while the stay lasts. Concurrency
// bounds the devices connecting or renewing at once, not those connected.
//
// When the stay ends, a device finishes what it is doing (a connection, a
// rotation, a state report: each bounded by Timeout), then disconnects;
// waits end at once.
func (r *runner) stay(ctx context.Context, devs []*simDevice) Report {
	start := r.now()
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		r.stayWait(stop, r.o.Stay)
		cancel()
	}()

	var counts stayCounts
	stopProgress := r.ticker(func(time.Time) string { return stayLine(&counts, len(devs)) })
	sem := make(chan struct{}, r.o.Concurrency)
	stayOne := r.stayDevice
	if r.o.Transport == TransportCoAP {
		stayOne = r.stayDeviceCoAP // coap_stay.go
	}
	outs := make([]stayOutcome, len(devs))
	var wg sync.WaitGroup
	for i, d := range devs {
		var at time.Time
		if r.o.Rate > 0 {
			at = start.Add(time.Duration(float64(i) / r.o.Rate * float64(time.Second)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = stayOne(ctx, stop, d, at, sem, &counts)
		}()
	}
	wg.Wait()
	cancel()
	<-waited

	rep := Report{Phase: PhaseStay, Devices: len(devs), Failed: map[string]int{}, Duration: r.now().Sub(start)}
	var latencies []time.Duration
	for i, out := range outs {
		latencies = append(latencies, out.latencies...)
		if out.connected {
			rep.Connected++
		}
		switch {
		case out.connected && out.seen > devs[i].reported:
			// Connected, but a command it took up was never applied.
			err := out.err
			if err == nil {
				err = ErrNotApplied
			}
			rep.Failed[reasonOf(err)]++
		case out.connected, out.revoked:
			rep.OK++
		default:
			err := out.err
			if err == nil {
				err = ctx.Err()
			}
			if err == nil {
				err = ErrNotConnected
			}
			rep.Failed[reasonOf(err)]++
		}
	}
	rep.summarize(latencies)
	rep.Applied = int(counts.applied.Load())
	rep.Rotations = int(counts.rotations.Load())
	rep.Revoked = int(counts.revoked.Load())
	rep.Ignored = int(counts.ignored.Load())
	rep.Reconnects = int(counts.reconnects.Load())
	rep.Retries = int(counts.retries.Load())
	if rep.Duration > 0 {
		rep.PerSecond = float64(rep.Applied) / rep.Duration.Seconds()
	}
	stopProgress(stayLine(&counts, len(devs)))
	return rep
}

// stayLine is one line of a stay's progress.
func stayLine(c *stayCounts, total int) string {
	return fmt.Sprintf("stay connected %d/%d applied %d rotations %d revoked %d ignored %d reconnects %d\n",
		c.connected.Load(), total, c.applied.Load(), c.rotations.Load(), c.revoked.Load(), c.ignored.Load(), c.reconnects.Load())
}

// stayDevice runs one device's stay, from at (zero: at once) until stop
// ends. Its operations run under ctx.
func (r *runner) stayDevice(ctx, stop context.Context, d *simDevice, at time.Time, sem chan struct{}, counts *stayCounts) stayOutcome {
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
	var since time.Time // when the command being applied arrived
	for failures := 0; stop.Err() == nil; {
		if failures > 0 && !r.wait(stop, backoff(failures-1, r.rand())) {
			break
		}
		conn, err := r.stayDial(ctx, stop, d, sem)
		if err != nil {
			fail(err)
			failures++
			continue
		}
		counts.connected.Add(1)
		err = r.obey(ctx, stop, d, conn, sem, counts, &out, &since)
		counts.connected.Add(-1)
		counts.ignored.Add(conn.Stats().IgnoredCommands)
		_ = conn.Close()
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

// stayDial connects with the device's current LDevID, subscribed to its
// commands.
func (r *runner) stayDial(ctx, stop context.Context, d *simDevice, sem chan struct{}) (*mqttclient.Conn, error) {
	select {
	case sem <- struct{}{}:
	case <-stop.Done():
		return nil, stop.Err()
	}
	defer func() { <-sem }()
	c := r.ldevidConfig(d)
	c.Commands = true
	return mqttclient.Dial(ctx, c)
}

// obey follows the commands that arrive on conn until stop ends (the
// device is then still connected), the connection is lost, the device
// rotated its LDevID (nil: reconnect with the new one) or was revoked (nil,
// and its LDevID is gone), or applying a command failed.
func (r *runner) obey(ctx, stop context.Context, d *simDevice, conn *mqttclient.Conn, sem chan struct{}, counts *stayCounts,
	out *stayOutcome, since *time.Time) error {
	report := func() error {
		if err := conn.ReportState(ctx, d.applied); err != nil {
			return fmt.Errorf("state: %w", err)
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
		// Applied before this connection (a rotation), not reported yet.
		if err := report(); err != nil {
			return err
		}
	}
	// atEnd ends the stay on this connection, if it still lives.
	atEnd := func() error {
		select {
		case <-conn.Done():
			return conn.Err()
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
		case <-conn.Done():
			return conn.Err()
		case cmd := <-conn.Commands():
			if cmd.Generation <= d.applied {
				continue // applied already: the retained command comes with every connection
			}
			if since.IsZero() {
				*since = r.now()
			}
			out.seen = max(out.seen, cmd.Generation)
			if cmd.Zone != "" {
				d.zone = cmd.Zone
			}
			switch {
			case cmd.Revoked:
				// Stop: the credential is revoked, there is nothing left
				// to sign a report with.
				d.applied, d.reported = cmd.Generation, cmd.Generation
				d.ldevid, d.ldevidKey, d.ldevidChain = nil, nil, nil
				counts.revoked.Add(1)
				counts.applied.Add(1)
				out.latencies = append(out.latencies, r.now().Sub(*since))
				*since = time.Time{}
				return nil
			case cmd.Rotate:
				if err := r.rotate(ctx, stop, d, conn, sem, counts); err != nil {
					if stop.Err() != nil && errors.Is(err, context.Canceled) {
						return atEnd() // the stay ended before the rotation could
					}
					return err
				}
				d.applied = cmd.Generation
				return nil // reconnect with the new LDevID and report there
			}
			d.applied = cmd.Generation
			if err := report(); err != nil {
				return err
			}
		}
	}
}

// rotate renews the device's LDevID with a new key over conn. The key and
// CSR are kept until the renewal succeeds, so that a resend after a lost
// answer gets the certificate already issued.
func (r *runner) rotate(ctx, stop context.Context, d *simDevice, conn *mqttclient.Conn, sem chan struct{}, counts *stayCounts) error {
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
	var iss *mqttclient.Issued
	var err error
	for n := 0; ; n++ {
		iss, err = conn.Renew(ctx, d.rotateCSR, d.claims())
		var se *mqttclient.StatusError
		if err == nil || !errors.As(err, &se) || !se.Retryable() || n >= r.o.Retries {
			break
		}
		counts.retries.Add(1)
		if !r.wait(stop, maxAgeWait(se.RetryAfter, r.rand())) {
			return stop.Err()
		}
	}
	if err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	chain, err := r.learnChain(iss.Chain)
	if err != nil {
		return err
	}
	if err := r.verifyMQTT(d, d.rotateKey, iss.Certificate); err != nil {
		return err
	}
	d.ldevid, d.ldevidKey, d.ldevidChain = iss.Certificate, d.rotateKey, chain
	d.rotateKey, d.rotateCSR = nil, nil
	counts.rotations.Add(1)
	return nil
}
