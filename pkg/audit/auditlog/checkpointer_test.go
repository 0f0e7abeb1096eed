package auditlog_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/audit/auditlog"
	"github.com/embark-iot/embark/pkg/store"
)

func TestCheckpointer(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	st := openStore(t, path)
	k := mustKey(t)
	clock := &fakeClock{now: t0}
	c := newCheckpointer(t, st, k, clock, auditlog.WithEvery(5), auditlog.WithInterval(10*time.Second))

	// An empty log: nothing to sign, but the key is stored.
	if n, err := c.Checkpoint(ctx); err != nil || n != 0 {
		t.Fatalf("empty log: %d, %v", n, err)
	}
	keys, err := auditlog.StoredKeys(ctx, st)
	if err != nil || len(keys) != 1 || !keys[0].Equal(k.Public()) {
		t.Fatalf("stored keys: %v, %v", keys, err)
	}

	steps := []struct {
		name    string
		append  int
		advance time.Duration
		flush   bool
		made    int
		want    []uint64
	}{
		{name: "ok/first entries are signed at once", append: 3, made: 1, want: []uint64{3}},
		{name: "ok/every 5th entry, the tail waits", append: 9, made: 2, want: []uint64{3, 5, 10}},
		{name: "ok/tail waits for the interval", append: 1, advance: 9 * time.Second, made: 0, want: []uint64{3, 5, 10}},
		{name: "ok/tail signed after the interval", advance: time.Second, made: 1, want: []uint64{3, 5, 10, 13}},
		{name: "ok/nothing new", advance: time.Minute, made: 0, want: []uint64{3, 5, 10, 13}},
		{name: "ok/flush signs the tail at once", append: 1, flush: true, made: 1, want: []uint64{3, 5, 10, 13, 14}},
		{name: "ok/a multiple; the tail after it waits", append: 4, advance: time.Minute, made: 1, want: []uint64{3, 5, 10, 13, 14, 15}},
	}
	for _, s := range steps {
		appendN(t, st, s.append)
		clock.Add(s.advance)
		pass := c.Checkpoint
		if s.flush {
			pass = c.Flush
		}
		n, err := pass(ctx)
		if err != nil || n != s.made {
			t.Fatalf("%s: made %d, %v; want %d", s.name, n, err, s.made)
		}
		if got := checkpointSeqs(t, st); !slices.Equal(got, s.want) {
			t.Fatalf("%s: checkpoints at %v, want %v", s.name, got, s.want)
		}
	}
	if last := c.Last(); last.Seq != 15 || !last.Time.Equal(clock.Now()) || last.KeyID != k.Public().KeyID() {
		t.Fatalf("Last = %+v", last)
	}
	rep, err := auditlog.Verify(ctx, st, k.Public())
	if err != nil || rep.Entries != 18 || rep.Checkpoints != 6 || rep.Unsigned() != 3 {
		t.Fatalf("Verify: %+v, %v", rep, err)
	}

	// A new checkpointer (a restart) carries on from the last checkpoint.
	appendN(t, st, 2)
	c2 := newCheckpointer(t, st, k, clock, auditlog.WithEvery(5))
	if n, err := c2.Checkpoint(ctx); err != nil || n != 1 {
		t.Fatalf("restart: %d, %v", n, err)
	}
	if got := checkpointSeqs(t, st); got[len(got)-1] != 20 || len(got) != 7 {
		t.Fatalf("restart: checkpoints at %v", got)
	}
}

// TestCheckpointerRefusesBrokenChain: a log changed behind the server's back
// is never signed.
func TestCheckpointerRefusesBrokenChain(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	k := mustKey(t)
	clock := &fakeClock{now: t0}
	st := openStore(t, path)
	appendN(t, st, 10)
	c := newCheckpointer(t, st, k, clock, auditlog.WithEvery(5))
	if n, err := c.Checkpoint(ctx); err != nil || n != 2 {
		t.Fatalf("checkpoint: %d, %v", n, err)
	}
	st.Close()

	st = openStore(t, path)
	appendN(t, st, 4)
	st.Close()
	tamper(t, path, func(b, _ *bbolt.Bucket) error {
		return editEntry(b, 12, func(e *audit.Entry) { e.Outcome = "denied" })
	})
	st = openStore(t, path)
	c = newCheckpointer(t, st, k, clock, auditlog.WithEvery(5))
	_, err := c.Flush(ctx)
	var be *audit.BrokenError
	if !errors.As(err, &be) || be.Seq != 12 || be.Reason != audit.ReasonContent {
		t.Fatalf("flush over a broken chain: %v", err)
	}
	appendN(t, st, 5)
	if _, err := c.Checkpoint(ctx); !errors.As(err, &be) || be.Seq != 12 {
		t.Fatalf("a later pass: %v", err)
	}
	if got := checkpointSeqs(t, st); !slices.Equal(got, []uint64{5, 10}) {
		t.Fatalf("checkpoints at %v after a refused pass", got)
	}
}

func TestCheckpointerOptions(t *testing.T) {
	st := openStore(t, dbPath(t))
	k := mustKey(t)
	tests := []struct {
		name string
		opt  auditlog.Option
	}{
		{"fail/every 0", auditlog.WithEvery(0)},
		{"fail/interval 0", auditlog.WithInterval(0)},
		{"fail/poll negative", auditlog.WithPoll(-time.Second)},
		{"fail/nil clock", auditlog.WithClock(nil)},
		{"fail/nil logger", auditlog.WithLogger(nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := auditlog.NewCheckpointer(st, k, tt.opt); !errors.Is(err, auditlog.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if _, err := auditlog.NewCheckpointer(st, nil); !errors.Is(err, auditlog.ErrInvalid) {
		t.Fatalf("fail/nil key: %v", err)
	}
}

// TestRun: the background loop signs the tail when it stops.
func TestRun(t *testing.T) {
	st := openStore(t, dbPath(t))
	k := mustKey(t)
	clock := &fakeClock{now: t0}
	c := newCheckpointer(t, st, k, clock, auditlog.WithPoll(time.Hour), auditlog.WithInterval(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	appendN(t, st, 3)
	cancel()
	<-done
	got := checkpointSeqs(t, st)
	if len(got) == 0 || got[len(got)-1] != 3 {
		t.Fatalf("checkpoints at %v, want the last at 3", got)
	}
}

// TestCheckpointerKeepsEvidence: a checkpoint record that does not verify
// is neither trusted nor overwritten.
func TestCheckpointerKeepsEvidence(t *testing.T) {
	ctx := context.Background()
	path := dbPath(t)
	k := mustKey(t)
	clock := &fakeClock{now: t0}
	st := openStore(t, path)
	appendN(t, st, 12)
	if n, err := newCheckpointer(t, st, k, clock, auditlog.WithEvery(5)).Flush(ctx); err != nil || n != 3 {
		t.Fatalf("flush: %d, %v", n, err)
	}
	st.Close()
	// The newest good checkpoint is now 5: the next pass is due to sign
	// 10 again, where a record is in the way.
	tamper(t, path, func(_, r *bbolt.Bucket) error {
		b := r.Bucket([]byte(auditlog.CheckpointKind))
		if err := b.Delete([]byte(auditlog.CheckpointKey(12))); err != nil {
			return err
		}
		return b.Put([]byte(auditlog.CheckpointKey(10)), []byte("garbage"))
	})
	st = openStore(t, path)
	appendN(t, st, 3)
	c := newCheckpointer(t, st, k, clock, auditlog.WithEvery(5))
	if n, err := c.Flush(ctx); err != nil || n != 1 {
		t.Fatalf("flush: %d, %v", n, err)
	}
	if got := checkpointSeqs(t, st); !slices.Equal(got, []uint64{5, 10, 15}) {
		t.Fatalf("checkpoints at %v", got)
	}
	raw, err := checkpointRaw(st, 10)
	if err != nil || string(raw) != "garbage" {
		t.Fatalf("record 10 = %q, %v", raw, err)
	}
	_, err = auditlog.Verify(ctx, st, k.Public())
	var be *audit.BrokenError
	if !errors.As(err, &be) || be.Seq != 10 || be.Reason != audit.ReasonCheckpointMalformed {
		t.Fatalf("verify: %v", err)
	}
}

func checkpointRaw(st store.Store, seq uint64) ([]byte, error) {
	var v []byte
	err := st.View(context.Background(), func(rd store.Reader) error {
		var err error
		v, err = rd.Record(auditlog.CheckpointKind, auditlog.CheckpointKey(seq))
		return err
	})
	return v, err
}
