package auditlog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/store"
)

// Defaults of a [Checkpointer].
const (
	// DefaultEvery: a checkpoint at every entry whose sequence number is a
	// multiple of it.
	DefaultEvery = 1000
	// DefaultInterval: entries wait at most this long (plus one poll) for
	// a checkpoint.
	DefaultInterval = 10 * time.Second
	// DefaultPoll is how often the log is looked at.
	DefaultPoll = 250 * time.Millisecond
	// chunk is how many entries one read transaction covers: short read
	// transactions never hold up the file's growth for long.
	chunk = 10_000
)

// Checkpointer signs checkpoints of a store's audit log beside the writers:
// it never runs inside their transactions. Each pass reads the entries
// appended since the last pass, checks that they chain on from the last
// verified entry, signs a checkpoint of every entry whose sequence number
// is a multiple of Every and, once Interval has passed since the last
// checkpoint, of the newest entry, and stores the checkpoints in one
// transaction. A log that does not chain on is never checkpointed: the pass
// fails with the *audit.BrokenError, and so does every later one.
type Checkpointer struct {
	st       store.Store
	key      *hybridsig.PrivateKey
	every    uint64
	interval time.Duration
	poll     time.Duration
	clock    func() time.Time
	log      *slog.Logger

	mu        sync.Mutex // one pass at a time
	loaded    bool
	keyStored bool
	head      audit.Entry      // the newest verified entry (Seq and Hash only)
	last      audit.Checkpoint // the newest checkpoint
	lastErr   string           // the last error logged, so as not to repeat it
}

// Option configures a [Checkpointer].
type Option func(*Checkpointer) error

// WithEvery sets N: a checkpoint at every N-th entry (default [DefaultEvery]).
func WithEvery(n uint64) Option {
	return func(c *Checkpointer) error {
		if n == 0 {
			return fmt.Errorf("%w: every 0 entries", ErrInvalid)
		}
		c.every = n
		return nil
	}
}

// WithInterval sets T: entries wait at most T for a checkpoint (default
// [DefaultInterval]).
func WithInterval(d time.Duration) Option {
	return func(c *Checkpointer) error {
		if d <= 0 {
			return fmt.Errorf("%w: interval %v", ErrInvalid, d)
		}
		c.interval = d
		return nil
	}
}

// WithPoll sets how often [Checkpointer.Run] looks at the log (default
// [DefaultPoll]).
func WithPoll(d time.Duration) Option {
	return func(c *Checkpointer) error {
		if d <= 0 {
			return fmt.Errorf("%w: poll %v", ErrInvalid, d)
		}
		c.poll = d
		return nil
	}
}

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *Checkpointer) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrInvalid)
		}
		c.clock = now
		return nil
	}
}

// WithLogger sets the logger of [Checkpointer.Run] (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *Checkpointer) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrInvalid)
		}
		c.log = l
		return nil
	}
}

// NewCheckpointer returns a checkpointer of st's audit log signing with key.
func NewCheckpointer(st store.Store, key *hybridsig.PrivateKey, opts ...Option) (*Checkpointer, error) {
	if st == nil || key == nil {
		return nil, fmt.Errorf("%w: nil store or key", ErrInvalid)
	}
	c := &Checkpointer{st: st, key: key, every: DefaultEvery, interval: DefaultInterval, poll: DefaultPoll,
		clock: time.Now, log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		if err := o(c); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Run makes checkpoints every poll until ctx ends, then a last one of the
// entries still unsigned. Errors are logged (once each) and the pass is
// tried again at the next poll. It returns when ctx is done.
func (c *Checkpointer) Run(ctx context.Context) {
	t := time.NewTicker(c.poll)
	defer t.Stop()
	for {
		c.report(c.pass(ctx, false))
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			c.report(c.pass(fctx, true))
			cancel()
			return
		case <-t.C:
		}
	}
}

func (c *Checkpointer) report(n int, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		if n > 0 {
			c.log.Debug("audit checkpoints", slog.Int("made", n), slog.Uint64("last", c.last.Seq))
		}
		c.lastErr = ""
		return
	}
	if msg := err.Error(); msg != c.lastErr {
		c.lastErr = msg
		c.log.Error("audit checkpoint", slog.Any("err", err))
	}
}

// Checkpoint runs one pass: it makes the checkpoints due now and returns
// how many.
func (c *Checkpointer) Checkpoint(ctx context.Context) (int, error) { return c.pass(ctx, false) }

// Flush runs one pass that also checkpoints the newest entry if no
// checkpoint covers it yet, whatever the interval.
func (c *Checkpointer) Flush(ctx context.Context) (int, error) { return c.pass(ctx, true) }

// Last returns the newest checkpoint (zero before the first).
func (c *Checkpointer) Last() audit.Checkpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

func (c *Checkpointer) pass(ctx context.Context, force bool) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		if err := c.load(ctx); err != nil {
			return 0, err
		}
	}
	made := 0
	for {
		targets, head, full, err := c.scan(ctx, force)
		if err != nil {
			return made, err
		}
		if len(targets) > 0 || !c.keyStored {
			n, err := c.store(ctx, targets)
			made += n
			if err != nil {
				return made, err
			}
		}
		c.head = head
		if !full {
			return made, nil
		}
	}
}

// recent is how many of the newest checkpoint records load tries before it
// verifies all of them.
const recent = 16

// load finds the newest checkpoint that this key signed and that verifies:
// the chain is checked on from its entry. Without one, from the start.
func (c *Checkpointer) load(ctx context.Context) error {
	pub := []*hybridsig.PublicKey{c.key.Public()}
	valid := func(s storedCheckpoint) (audit.Checkpoint, bool) {
		if s.err != nil {
			return audit.Checkpoint{}, false
		}
		cp, err := s.sc.Verify(pub)
		return cp, err == nil && cp.Seq == s.at
	}
	var (
		last  audit.Checkpoint
		found bool
		tail  []storedCheckpoint // the newest records, oldest first
		total int
	)
	err := c.st.View(ctx, func(rd store.Reader) error {
		tail, total = tail[:0], 0
		if _, err := rd.Record(KeyKind, pub[0].KeyID()); err == nil {
			c.keyStored = true
		}
		return readCheckpoints(rd, 0, func(s storedCheckpoint) bool {
			total++
			if len(tail) == recent {
				tail = append(tail[:0], tail[1:]...)
			}
			tail = append(tail, s)
			return true
		})
	})
	if err != nil {
		return fmt.Errorf("auditlog: load checkpoints: %w", err)
	}
	for i := len(tail) - 1; i >= 0 && !found; i-- {
		last, found = valid(tail[i])
	}
	if !found && total > len(tail) {
		// None of the newest verifies: look at all of them.
		err = c.st.View(ctx, func(rd store.Reader) error {
			found = false
			return readCheckpoints(rd, 0, func(s storedCheckpoint) bool {
				if cp, ok := valid(s); ok {
					last, found = cp, true
				}
				return true
			})
		})
		if err != nil {
			return fmt.Errorf("auditlog: load checkpoints: %w", err)
		}
	}
	if !found {
		last = audit.Checkpoint{}
	}
	if total > 0 && (!found || tail[len(tail)-1].at != last.Seq) {
		c.log.Warn("audit checkpoints this key cannot verify follow the last good one; they are kept, not overwritten: run `embark audit verify`",
			slog.Uint64("last_good", last.Seq))
	}
	c.last = last
	c.head = audit.Entry{Seq: last.Seq, Hash: last.Hash}
	c.loaded = true
	return nil
}

// scan reads up to chunk entries after the head, checks that they chain
// on, and returns the entries to checkpoint, the new head and whether the
// chunk was full (more entries may follow).
func (c *Checkpointer) scan(ctx context.Context, force bool) (targets []audit.Entry, head audit.Entry, full bool, err error) {
	head = c.head
	n := 0
	err = c.st.View(ctx, func(rd store.Reader) error {
		targets, head, n = nil, c.head, 0
		return rd.Audit(c.head.Seq, func(e audit.Entry) (bool, error) {
			if err := audit.Check(head, e); err != nil {
				return false, err
			}
			head = audit.Entry{Seq: e.Seq, Hash: e.Hash}
			if e.Seq%c.every == 0 {
				targets = append(targets, head)
			}
			n++
			return n < chunk, nil
		})
	})
	if err != nil {
		return nil, c.head, false, fmt.Errorf("auditlog: %w", err)
	}
	full = n == chunk
	now := c.clock()
	lastCP, lastTime := c.last.Seq, c.last.Time
	if len(targets) > 0 {
		lastCP, lastTime = targets[len(targets)-1].Seq, now
	}
	if !full && head.Seq > lastCP && (force || now.Sub(lastTime) >= c.interval) {
		targets = append(targets, head)
	}
	return targets, head, full, nil
}

// store signs the targets (outside any transaction) and stores them, with
// the public key if it is not stored yet, in one transaction. It returns
// how many it stored.
func (c *Checkpointer) store(ctx context.Context, targets []audit.Entry) (int, error) {
	now := c.clock()
	type rec struct {
		key string
		val []byte
		cp  audit.Checkpoint
	}
	recs := make([]rec, 0, len(targets))
	for _, e := range targets {
		sc, err := audit.SignCheckpoint(c.key, e, now)
		if err != nil {
			return 0, err
		}
		val, err := sc.Marshal()
		if err != nil {
			return 0, err
		}
		recs = append(recs, rec{key: CheckpointKey(e.Seq), val: val,
			cp: audit.Checkpoint{Seq: e.Seq, Hash: e.Hash, Time: now.Truncate(time.Second), KeyID: c.key.Public().KeyID()}})
	}
	pub := c.key.Public()
	storeKey := !c.keyStored
	var stored []audit.Checkpoint
	err := c.st.Update(ctx, func(tx store.Tx) error {
		stored = stored[:0]
		if storeKey {
			if err := tx.PutRecord(KeyKind, pub.KeyID(), pub.Bytes()); err != nil {
				return err
			}
		}
		for _, r := range recs {
			// A record already there is evidence (a checkpoint this key
			// cannot verify): it is kept for verifiers to report.
			if _, err := tx.Record(CheckpointKind, r.key); err == nil {
				continue
			} else if !errors.Is(err, store.ErrNotFound) {
				return err
			}
			if err := tx.PutRecord(CheckpointKind, r.key, r.val); err != nil {
				return err
			}
			stored = append(stored, r.cp)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("auditlog: store checkpoints: %w", err)
	}
	c.keyStored = true
	if len(stored) > 0 {
		c.last = stored[len(stored)-1]
	}
	if len(stored) < len(recs) {
		c.log.Warn("audit checkpoint records in the way were kept; run `embark audit verify`",
			slog.Int("kept", len(recs)-len(stored)))
	}
	return len(stored), nil
}
