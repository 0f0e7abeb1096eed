package campaign

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// Desired is what the runner needs of the devices' desired state (package
// desired): the same instance the transports follow.
type Desired interface {
	Set(ctx context.Context, id, actor string, edit func(*desired.Desired)) (desired.Desired, error)
	Of(ctx context.Context, id string) (desired.Desired, error)
	OnChange(fn func(id string, d desired.Desired))
}

// Core is what the runner needs of the onboarding core (package onboard).
type Core interface {
	// ConfirmInUse marks the device's current certificate in use and
	// supersedes its predecessor; it returns the serials superseded.
	ConfirmInUse(ctx context.Context, deviceID, serial, actor string) ([]string, error)
}

// Defaults of a Runner.
const (
	DefaultPoll    = 250 * time.Millisecond
	DefaultWorkers = 32
)

// Option configures a Runner.
type Option func(*Runner) error

// WithClock sets the clock of the records (asked, done, timeouts). The
// pacing of the asks always follows real time.
func WithClock(now func() time.Time) Option {
	return func(r *Runner) error { r.clock = now; return nil }
}

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(r *Runner) error { r.log = l; return nil }
}

// WithPoll sets how often the runner looks for new or cancelled campaigns
// and for devices past their timeout.
func WithPoll(d time.Duration) Option {
	return func(r *Runner) error {
		if d <= 0 {
			return fmt.Errorf("campaign: poll interval %s: want more than 0", d)
		}
		r.poll = d
		return nil
	}
}

// WithWorkers bounds the devices asked at once per campaign, and the
// devices looked at at once.
func WithWorkers(n int) Option {
	return func(r *Runner) error {
		if n < 1 {
			return fmt.Errorf("campaign: %d workers: want at least 1", n)
		}
		r.workers = n
		return nil
	}
}

// WithRetired sets fn, called with the serials of the certificates retired
// when devices completed (the server drops their live sessions).
func WithRetired(fn func(serials []string)) Option {
	return func(r *Runner) error { r.retired = fn; return nil }
}

// Runner asks the devices of the running campaigns and follows them. Run
// it once per registry.
type Runner struct {
	st      store.Store
	ds      Desired
	core    Core
	clock   func() time.Time
	log     *slog.Logger
	poll    time.Duration
	workers int
	retired func([]string)

	jobs     chan string
	overflow atomic.Bool
	stripes  [64]sync.Mutex
	wg       sync.WaitGroup

	mu       sync.Mutex
	active   map[string]*active
	byDevice map[string][]*active
	// settled holds the campaigns that need nothing more.
	settled map[string]bool
}

// active is a campaign the runner follows.
type active struct {
	c      Campaign
	items  map[string]*Item
	counts Counts
	// asking is set while the asker runs; askDone closes when it ends.
	asking     bool
	stopAsk    context.CancelFunc
	askDone    chan struct{}
	cancelling bool
	finishing  bool
}

// NewRunner returns a Runner over the registry, the desired state and the core.
func NewRunner(st store.Store, ds Desired, core Core, opts ...Option) (*Runner, error) {
	if st == nil || ds == nil || core == nil {
		return nil, errors.New("campaign: runner needs a store, desired state and a core")
	}
	r := &Runner{st: st, ds: ds, core: core, clock: time.Now, log: slog.New(slog.DiscardHandler),
		poll: DefaultPoll, workers: DefaultWorkers, retired: func([]string) {},
		active: map[string]*active{}, byDevice: map[string][]*active{}, settled: map[string]bool{}}
	for _, o := range opts {
		if err := o(r); err != nil {
			return nil, err
		}
	}
	r.jobs = make(chan string, 1<<16)
	return r, nil
}

// Run follows the campaigns until ctx ends: it resumes those left
// unfinished, starts new ones, notices cancellations and timeouts.
func (r *Runner) Run(ctx context.Context) error {
	r.ds.OnChange(r.changed)
	for range r.workers {
		r.wg.Go(func() {
			for {
				select {
				case id := <-r.jobs:
					r.process(ctx, id)
				case <-ctx.Done():
					return
				}
			}
		})
	}
	t := time.NewTicker(r.poll)
	defer t.Stop()
	for {
		if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("campaigns: read the registry", slog.Any("err", err))
		}
		r.sweep(ctx)
		select {
		case <-ctx.Done():
			r.mu.Lock()
			for _, a := range r.active {
				if a.stopAsk != nil {
					a.stopAsk()
				}
			}
			r.mu.Unlock()
			r.wg.Wait()
			return nil
		case <-t.C:
		}
	}
}

// changed is told about every committed change of a desired state.
func (r *Runner) changed(id string, d desired.Desired) {
	r.mu.Lock()
	as := r.byDevice[id]
	own := false
	for _, a := range as {
		if a.c.ID == d.Campaign {
			own = true
		}
	}
	r.mu.Unlock()
	if len(as) == 0 {
		return
	}
	if own && d.Rotate && d.Pending() {
		// A campaign's own request, not acted on yet: nothing to judge.
		return
	}
	select {
	case r.jobs <- id:
	default:
		r.overflow.Store(true) // the next sweep looks at every device
	}
}

func (r *Runner) stripe(id string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(id))
	return &r.stripes[h.Sum32()%uint32(len(r.stripes))]
}

// refresh loads the campaigns the runner does not follow yet and notices
// cancellations.
func (r *Runner) refresh(ctx context.Context) error {
	var cs []Campaign
	err := r.st.View(ctx, func(rd store.Reader) error {
		cs = nil
		return rd.Records(Kind, "", func(_ string, val []byte) (bool, error) {
			c, err := decodeCampaign(val)
			cs = append(cs, c)
			return err == nil, err
		})
	})
	if err != nil {
		return err
	}
	for _, c := range cs {
		r.mu.Lock()
		a, known := r.active[c.ID]
		settled := r.settled[c.ID]
		cancel := known && c.State == Cancelled && !a.cancelling
		if cancel {
			a.cancelling = true
			a.c.State, a.c.Ended, a.c.EndedBy = c.State, c.Ended, c.EndedBy
		}
		r.mu.Unlock()
		switch {
		case cancel:
			r.wg.Go(func() { r.cancel(ctx, a) })
		case !known && !settled:
			if err := r.load(ctx, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// load starts following a campaign: its asker if devices are queued, the
// devices asked (looked at once, for what happened while no runner ran).
func (r *Runner) load(ctx context.Context, c Campaign) error {
	a := &active{c: c, items: map[string]*Item{}}
	err := r.st.View(ctx, func(rd store.Reader) error {
		clear(a.items)
		a.counts = Counts{}
		return eachItem(rd, c.ID, "", func(it Item) (bool, error) {
			a.items[it.Device] = &it
			a.counts.add(it.State, 1)
			return true, nil
		})
	})
	if err != nil {
		return err
	}
	var queued, asked []string
	for id, it := range a.items {
		switch it.State {
		case Queued:
			queued = append(queued, id)
		case Pending, Offline, Failed:
			asked = append(asked, id)
		}
	}
	slices.Sort(queued)
	r.mu.Lock()
	r.active[c.ID] = a
	for id, it := range a.items {
		if followed(it.State) {
			r.byDevice[id] = append(r.byDevice[id], a)
		}
	}
	if c.State == Running && len(queued) > 0 {
		actx, stop := context.WithCancel(ctx)
		a.asking, a.stopAsk, a.askDone = true, stop, make(chan struct{})
		r.wg.Go(func() { r.ask(actx, a, queued) })
	}
	if c.State == Cancelled {
		a.cancelling = true
		r.wg.Go(func() { r.cancel(ctx, a) })
	}
	r.mu.Unlock()
	if len(queued) > 0 || len(asked) > 0 {
		r.log.Info("campaign followed", slog.String("campaign", c.ID), slog.String("state", string(c.State)),
			slog.Int("queued", len(queued)), slog.Int("asked", len(asked)))
	}
	for _, id := range asked {
		if !r.enqueue(ctx, id) {
			return ctx.Err()
		}
	}
	r.maybeFinish(ctx, a)
	r.forgetIfSettled(a)
	return nil
}

// followed reports whether events of a device in state s matter.
func followed(s ItemState) bool {
	return s == Queued || s == Pending || s == Offline || s == Failed
}

func (r *Runner) enqueue(ctx context.Context, id string) bool {
	select {
	case r.jobs <- id:
		return true
	case <-ctx.Done():
		return false
	}
}

// ask asks the queued devices at the campaign's rate: device i not before
// i/rate seconds after the start. Devices that could not be asked (the
// registry failed) are tried again, a few times.
func (r *Runner) ask(ctx context.Context, a *active, queue []string) {
	defer func() {
		r.mu.Lock()
		a.asking = false
		close(a.askDone)
		r.mu.Unlock()
		r.maybeFinish(context.WithoutCancel(ctx), a)
	}()
	for attempt := 0; len(queue) > 0 && ctx.Err() == nil; attempt++ {
		if attempt > 0 {
			if !sleep(ctx, time.Duration(attempt)*time.Second) {
				return
			}
		}
		var mu sync.Mutex
		var again []string
		start := time.Now()
		sem := make(chan struct{}, r.workers)
		var wg sync.WaitGroup
	dispatch:
		for i, id := range queue {
			if !a.c.Unlimited && i > 0 {
				at := start.Add(time.Duration(float64(i) / a.c.Rate * float64(time.Second)))
				if !sleep(ctx, time.Until(at)) {
					break
				}
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				break dispatch
			}
			wg.Go(func() {
				defer func() { <-sem }()
				if err := r.askOne(ctx, a, id); err != nil && ctx.Err() == nil {
					last := attempt == 2
					r.log.Warn("campaign: ask", slog.String("campaign", a.c.ID), slog.String("device", id),
						slog.Bool("final", last), slog.Any("err", err))
					if last {
						r.fail(ctx, a, id, "could not be asked: "+err.Error())
						return
					}
					mu.Lock()
					again = append(again, id)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		slices.Sort(again)
		queue = again
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// item returns a copy of the item of device id in a, and whether the
// campaign is being cancelled.
func (r *Runner) item(a *active, id string) (Item, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *a.items[id], a.cancelling
}

// askOne asks one queued device to rotate, unless the campaign already
// did before a restart (its request is the device's latest).
func (r *Runner) askOne(ctx context.Context, a *active, id string) error {
	lk := r.stripe(id)
	lk.Lock()
	defer lk.Unlock()
	it, cancelling := r.item(a, id)
	if it.State != Queued || cancelling {
		return nil
	}
	dev, cur, err := r.readDevice(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return r.commit(ctx, a, withState(it, Failed, "device no longer in the registry", r.clock()))
	}
	if err != nil {
		return err
	}
	if cur == nil || (dev.State != device.Onboarded && dev.State != device.Quarantined) || !cur.Status.Usable() {
		return r.commit(ctx, a, withState(it, Failed, fmt.Sprintf("cannot rotate: device %s without a live LDevID", dev.State), r.clock()))
	}
	d, err := r.ds.Of(ctx, id)
	if err != nil {
		return err
	}
	resumed := d.Campaign == a.c.ID && d.Rotate
	if resumed {
		// Asked before a restart, not recorded: keep what Start saw.
		it.Generation, it.AskedAt = d.Generation, d.Changed
	} else {
		it.OldCert, it.OldKey = dev.Current, cur.KeySHA256
		it.AskedAt = r.clock()
		if d, err = r.ds.Set(ctx, id, "campaign:"+a.c.ID, func(x *desired.Desired) { x.Rotate, x.Campaign = true, a.c.ID }); err != nil {
			if errors.Is(err, desired.ErrUnknownDevice) {
				return r.commit(ctx, a, withState(it, Failed, "device no longer in the registry", r.clock()))
			}
			return err
		}
		it.Generation = d.Generation
	}
	it.Asks++
	if err := r.commit(ctx, a, withState(it, Pending, "", r.clock())); err != nil {
		return err
	}
	if resumed {
		r.enqueue(ctx, id)
	}
	return nil
}

func withState(it Item, s ItemState, reason string, now time.Time) Item {
	it.State, it.Reason, it.Changed = s, reason, now
	return it
}

// fail marks a device failed outside of a judgement.
func (r *Runner) fail(ctx context.Context, a *active, id, reason string) {
	lk := r.stripe(id)
	lk.Lock()
	defer lk.Unlock()
	it, _ := r.item(a, id)
	if it.State != Queued {
		return
	}
	if err := r.commit(ctx, a, withState(it, Failed, reason, r.clock())); err != nil {
		r.log.Warn("campaign: record", slog.String("campaign", a.c.ID), slog.String("device", id), slog.Any("err", err))
	}
}

// readDevice reads a device and its current certificate (nil if none).
func (r *Runner) readDevice(ctx context.Context, id string) (device.Device, *device.Certificate, error) {
	var dev device.Device
	var cur *device.Certificate
	err := r.st.View(ctx, func(rd store.Reader) error {
		var err error
		cur = nil
		if dev, err = rd.Device(id); err != nil {
			return err
		}
		if dev.Current == "" {
			return nil
		}
		c, err := rd.Certificate(dev.Current)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		c.DER = nil
		cur = &c
		return nil
	})
	return dev, cur, err
}

// process looks at one device for every campaign that follows it.
func (r *Runner) process(ctx context.Context, id string) {
	lk := r.stripe(id)
	lk.Lock()
	defer lk.Unlock()
	type ref struct {
		a  *active
		c  Campaign
		it Item
	}
	var refs []ref
	r.mu.Lock()
	for _, a := range r.byDevice[id] {
		it := a.items[id]
		if !a.cancelling && (it.State == Pending || it.State == Offline || it.State == Failed) {
			refs = append(refs, ref{a, a.c, *it})
		}
	}
	r.mu.Unlock()
	if len(refs) == 0 {
		return
	}
	dev, cur, err := r.readDevice(ctx, id)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			r.log.Warn("campaign: read device", slog.String("device", id), slog.Any("err", err))
			return
		}
		dev = device.Device{ID: id, State: "deleted"}
	}
	d, err := r.ds.Of(ctx, id)
	if err != nil && !errors.Is(err, desired.ErrUnknownDevice) {
		r.log.Warn("campaign: read desired state", slog.String("device", id), slog.Any("err", err))
		return
	}
	now := r.clock()
	for _, x := range refs {
		v := judge(x.it, time.Duration(x.c.Timeout), dev, cur, d, now)
		if err := r.apply(ctx, x.a, x.it, v, dev, cur, now); err != nil && ctx.Err() == nil {
			r.log.Warn("campaign: device", slog.String("campaign", x.c.ID), slog.String("device", id), slog.Any("err", err))
		}
	}
}

// apply carries out a verdict on an item.
func (r *Runner) apply(ctx context.Context, a *active, it Item, v verdict, dev device.Device, cur *device.Certificate, now time.Time) error {
	switch {
	case v.confirm:
		retired, err := r.core.ConfirmInUse(ctx, dev.ID, dev.Current, "campaign:"+a.c.ID)
		if err != nil {
			return fmt.Errorf("confirm %s in use: %w", dev.Current, err)
		}
		if len(retired) > 0 {
			r.retired(retired)
		}
		it.NewCert, it.NewKey, it.DoneAt = dev.Current, cur.KeySHA256, now
		return r.commit(ctx, a, withState(it, Done, "", now))
	case v.reask:
		d, err := r.ds.Set(ctx, dev.ID, "campaign:"+a.c.ID, func(x *desired.Desired) { x.Rotate, x.Campaign = true, a.c.ID })
		if err != nil {
			return err
		}
		it.Generation, it.AskedAt = d.Generation, now
		it.Asks++
		next := v.state
		if it.State == Offline || it.State == Failed {
			next = it.State // asked again after the timeout: it stays counted as it was
		}
		return r.commit(ctx, a, withState(it, next, v.reason, now))
	case v.state != it.State || v.reason != it.Reason:
		return r.commit(ctx, a, withState(it, v.state, v.reason, now))
	}
	return nil
}

// commit records an item's new state, in the registry then in memory. The
// caller holds the device's stripe.
func (r *Runner) commit(ctx context.Context, a *active, it Item) error {
	if err := r.st.Update(ctx, func(tx store.Tx) error { return putItem(tx, a.c.ID, it) }); err != nil {
		return err
	}
	r.mu.Lock()
	old := a.items[it.Device]
	a.counts.add(old.State, -1)
	a.counts.add(it.State, 1)
	was := followed(old.State)
	*old = it
	if was && !followed(it.State) {
		as := r.byDevice[it.Device]
		if i := slices.Index(as, a); i >= 0 {
			as = slices.Delete(as, i, i+1)
		}
		if len(as) == 0 {
			delete(r.byDevice, it.Device)
		} else {
			r.byDevice[it.Device] = as
		}
	}
	r.mu.Unlock()
	if old.State != it.State && (it.State == Done || it.State == Pending) {
		r.log.Debug("campaign device", slog.String("campaign", a.c.ID), slog.String("device", it.Device), slog.String("state", string(it.State)))
	}
	r.maybeFinish(ctx, a)
	r.forgetIfSettled(a)
	return nil
}

// maybeFinish ends a running campaign once no device is queued or pending.
func (r *Runner) maybeFinish(ctx context.Context, a *active) {
	r.mu.Lock()
	ready := a.c.State == Running && !a.asking && !a.cancelling && !a.finishing && a.counts.Queued == 0 && a.counts.Pending == 0
	if ready {
		a.finishing = true
	}
	counts := a.counts
	r.mu.Unlock()
	if !ready {
		return
	}
	detail := fmt.Sprintf("%d done, %d failed, %d offline", counts.Done, counts.Failed, counts.Offline)
	c, err := setState(ctx, r.st, a.c.ID, Finished, "system", r.clock(), detail)
	r.mu.Lock()
	a.finishing = false
	switch {
	case err == nil:
		a.c.State, a.c.Ended, a.c.EndedBy = c.State, c.Ended, c.EndedBy
	case errors.Is(err, ErrNotRunning):
		// Cancelled meanwhile: the next refresh handles it.
	default:
		r.log.Warn("campaign: finish", slog.String("campaign", a.c.ID), slog.Any("err", err))
	}
	r.mu.Unlock()
	if err == nil {
		r.log.Info("campaign finished", slog.String("campaign", a.c.ID), slog.Int("done", counts.Done),
			slog.Int("failed", counts.Failed), slog.Int("offline", counts.Offline))
	}
}

// forgetIfSettled stops following a finished campaign that has no device
// left to follow.
func (r *Runner) forgetIfSettled(a *active) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a.c.State != Finished || r.active[a.c.ID] != a {
		return
	}
	for _, it := range a.items {
		if followed(it.State) {
			return
		}
	}
	r.dropLocked(a)
}

// dropLocked stops following a campaign. The caller holds r.mu.
func (r *Runner) dropLocked(a *active) {
	for id := range a.items {
		as := r.byDevice[id]
		if i := slices.Index(as, a); i >= 0 {
			as = slices.Delete(as, i, i+1)
		}
		if len(as) == 0 {
			delete(r.byDevice, id)
		} else {
			r.byDevice[id] = as
		}
	}
	delete(r.active, a.c.ID)
	r.settled[a.c.ID] = true
}

// cancel withdraws a cancelled campaign: the asker stops, queued devices
// are cancelled, and asked devices whose latest desired state is still
// the campaign's request get a new generation without it.
func (r *Runner) cancel(ctx context.Context, a *active) {
	r.mu.Lock()
	stop, done := a.stopAsk, a.askDone
	ids := make([]string, 0, len(a.items))
	for id := range a.items {
		ids = append(ids, id)
	}
	r.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	slices.Sort(ids)
	n := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		if err := r.withdraw(ctx, a, id); err != nil {
			r.log.Warn("campaign: cancel", slog.String("campaign", a.c.ID), slog.String("device", id), slog.Any("err", err))
			continue
		}
		n++
	}
	r.log.Info("campaign cancelled", slog.String("campaign", a.c.ID), slog.Int("devices", n))
	r.mu.Lock()
	r.dropLocked(a)
	r.mu.Unlock()
}

func (r *Runner) withdraw(ctx context.Context, a *active, id string) error {
	lk := r.stripe(id)
	lk.Lock()
	defer lk.Unlock()
	r.mu.Lock()
	it := *a.items[id]
	r.mu.Unlock()
	switch it.State {
	case Queued:
	case Pending, Offline:
		d, err := r.ds.Of(ctx, id)
		if err != nil && !errors.Is(err, desired.ErrUnknownDevice) {
			return err
		}
		if err == nil && d.Campaign == a.c.ID && d.Rotate && d.Pending() {
			// A new generation clears the one-shot rotate request.
			if _, err := r.ds.Set(ctx, id, "campaign:"+a.c.ID, func(*desired.Desired) {}); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	return r.commit(ctx, a, withState(it, ItemCanceled, "campaign cancelled", r.clock()))
}

// sweep looks again at the devices past their timeout, and at every
// followed device after an event was lost.
func (r *Runner) sweep(ctx context.Context) {
	all := r.overflow.Swap(false)
	now := r.clock()
	var ids []string
	var running []*active
	r.mu.Lock()
	for _, a := range r.active {
		if a.cancelling {
			continue
		}
		if a.c.State == Running {
			running = append(running, a)
		}
		timeout := time.Duration(a.c.Timeout)
		for id, it := range a.items {
			switch {
			case it.State == Pending && !now.Before(it.AskedAt.Add(timeout)):
				ids = append(ids, id)
			case all && (it.State == Pending || it.State == Offline || it.State == Failed):
				ids = append(ids, id)
			}
		}
	}
	r.mu.Unlock()
	for _, a := range running {
		r.maybeFinish(ctx, a)
	}
	for _, id := range ids {
		if !r.enqueue(ctx, id) {
			return
		}
	}
}
