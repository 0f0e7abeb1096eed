package bolt

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

var errBoom = errors.New("boom")

// TestRunBatch drives the committer's batch logic directly, so that the
// composition of each batch is known.
func TestRunBatch(t *testing.T) {
	tests := []struct {
		name        string
		n           int
		fail        []int // members whose function returns errBoom
		cancelled   []int // members whose context is done before the batch
		panics      []int // members whose function panics
		wantCommits uint64
		wantCalls   []int // how often each member's function ran
	}{
		{name: "ok/all-succeed-in-one-commit", n: 5,
			wantCommits: 1, wantCalls: []int{1, 1, 1, 1, 1}},
		{name: "ok/single-member", n: 1,
			wantCommits: 1, wantCalls: []int{1}},
		{name: "fail/middle-member-runs-alone", n: 5, fail: []int{2},
			wantCommits: 2, wantCalls: []int{2, 2, 2, 1, 1}},
		{name: "fail/first-member", n: 5, fail: []int{0},
			wantCommits: 1, wantCalls: []int{2, 1, 1, 1, 1}},
		{name: "fail/last-member", n: 5, fail: []int{4},
			wantCommits: 1, wantCalls: []int{2, 2, 2, 2, 2}},
		{name: "fail/two-members", n: 5, fail: []int{1, 3},
			wantCommits: 3, wantCalls: []int{2, 2, 2, 2, 1}},
		{name: "fail/every-member", n: 3, fail: []int{0, 1, 2},
			wantCommits: 0, wantCalls: []int{2, 2, 1}},
		{name: "fail/context-done-before-batch", n: 4, cancelled: []int{1, 3},
			wantCommits: 1, wantCalls: []int{1, 0, 1, 0}},
		{name: "fail/member-panics", n: 3, panics: []int{1},
			wantCommits: 2, wantCalls: []int{2, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestDB(t)
			calls := make([]atomic.Int32, tt.n)
			cancelled, cancel := context.WithCancel(context.Background())
			cancel()
			reqs := make([]*request, tt.n)
			for i := range reqs {
				ctx := context.Background()
				if slices.Contains(tt.cancelled, i) {
					ctx = cancelled
				}
				reqs[i] = &request{ctx: ctx, done: make(chan result, 1), fn: func(tx store.Tx) error {
					calls[i].Add(1)
					d := device.Device{ID: memberID(i)}
					if err := tx.PutDevice(&d); err != nil {
						return err
					}
					if slices.Contains(tt.panics, i) {
						panic(fmt.Sprintf("member %d", i))
					}
					if slices.Contains(tt.fail, i) {
						return fmt.Errorf("member %d: %w", i, errBoom)
					}
					return nil
				}}
			}
			commits := s.commits.Load()
			s.runBatch(slices.Clone(reqs))

			if got := s.commits.Load() - commits; got != tt.wantCommits {
				t.Errorf("commits = %d, want %d", got, tt.wantCommits)
			}
			for i, r := range reqs {
				var res result
				select {
				case res = <-r.done:
				default:
					t.Fatalf("member %d was not answered", i)
				}
				if len(r.done) != 0 {
					t.Fatalf("member %d was answered twice", i)
				}
				if got := int(calls[i].Load()); got != tt.wantCalls[i] {
					t.Errorf("member %d ran %d times, want %d", i, got, tt.wantCalls[i])
				}
				ok := true
				switch {
				case slices.Contains(tt.cancelled, i):
					ok = false
					if !errors.Is(res.err, context.Canceled) {
						t.Errorf("member %d: err = %v, want context.Canceled", i, res.err)
					}
				case slices.Contains(tt.fail, i):
					ok = false
					if !errors.Is(res.err, errBoom) {
						t.Errorf("member %d: err = %v, want errBoom", i, res.err)
					}
				case slices.Contains(tt.panics, i):
					ok = false
					if !res.panicked || res.panicValue != fmt.Sprintf("member %d", i) {
						t.Errorf("member %d: result %+v, want its panic", i, res)
					}
				case res.err != nil || res.panicked:
					t.Errorf("member %d: result %+v, want success", i, res)
				}
				if err := s.View(t.Context(), func(r store.Reader) error {
					_, err := r.Device(memberID(i))
					if ok && err != nil {
						t.Errorf("member %d committed nothing: %v", i, err)
					}
					if !ok && !errors.Is(err, store.ErrNotFound) {
						t.Errorf("failed member %d: Device err = %v, want ErrNotFound", i, err)
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func memberID(i int) string { return device.ID("acme", fmt.Sprintf("M-%d", i)) }

// blockCommitter starts an Update whose function waits until release is
// called; release returns that Update's result.
func blockCommitter(t *testing.T, s *DB) (release func() error) {
	t.Helper()
	started := make(chan struct{})
	unblock := make(chan struct{})
	done := make(chan error, 1)
	var once sync.Once
	go func() {
		done <- s.Update(context.Background(), func(tx store.Tx) error {
			once.Do(func() { close(started) })
			<-unblock
			d := device.Device{ID: memberID(0)}
			return tx.PutDevice(&d)
		})
	}()
	<-started
	return func() error {
		close(unblock)
		return <-done
	}
}

func TestUpdateContextEndsWhileQueued(t *testing.T) {
	s := openTestDB(t)
	release := blockCommitter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	ran := atomic.Bool{}
	errc := make(chan error, 1)
	go func() {
		errc <- s.Update(ctx, func(tx store.Tx) error {
			ran.Store(true)
			d := device.Device{ID: memberID(1)}
			return tx.PutDevice(&d)
		})
	}()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("queued Update: err = %v, want context.Canceled", err)
	}
	if err := release(); err != nil {
		t.Fatalf("blocking Update: %v", err)
	}
	if ran.Load() {
		t.Fatalf("the cancelled Update's function ran")
	}
	if err := s.View(t.Context(), func(r store.Reader) error {
		if _, err := r.Device(memberID(1)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("cancelled Update's device: err = %v, want ErrNotFound", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestCloseAnswersWaitingUpdates(t *testing.T) {
	path := t.TempDir() + "/registry.db"
	s := openTestDBAt(t, path)
	release := blockCommitter(t, s)

	const waiting = 5
	errs := make(chan error, waiting)
	for i := range waiting {
		go func() {
			errs <- s.Update(context.Background(), func(tx store.Tx) error {
				d := device.Device{ID: memberID(i + 1)}
				return tx.PutDevice(&d)
			})
		}()
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	// Close waits for the batch in progress; wait until it has begun.
	for !s.isClosing() {
		runtime.Gosched()
	}
	if err := release(); err != nil {
		t.Fatalf("Update in progress at Close: %v", err)
	}
	for range waiting {
		if err := <-errs; !errors.Is(err, store.ErrClosed) {
			t.Errorf("Update waiting at Close: err = %v, want store.ErrClosed", err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}

	// The batch in progress was committed; nothing after it was.
	s = openTestDBAt(t, path)
	if err := s.View(t.Context(), func(r store.Reader) error {
		if _, err := r.Device(memberID(0)); err != nil {
			t.Errorf("Update in progress at Close: %v", err)
		}
		return r.Devices("", func(d device.Device) (bool, error) {
			if d.ID != memberID(0) {
				t.Errorf("Update refused at Close was committed: %s", d.ID)
			}
			return true, nil
		})
	}); err != nil {
		t.Fatal(err)
	}
}

func TestUpdatePanicReachesCaller(t *testing.T) {
	s := openTestDB(t)
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the function's panic", p)
			}
		}()
		_ = s.Update(t.Context(), func(tx store.Tx) error {
			d := device.Device{ID: memberID(0)}
			if err := tx.PutDevice(&d); err != nil {
				return err
			}
			panic("boom")
		})
		t.Fatalf("Update returned")
	}()
	// The committer survived and the panicking function wrote nothing.
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.Device(memberID(0)); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("device of the panicking Update: %v", err)
		}
		d := device.Device{ID: memberID(1)}
		return tx.PutDevice(&d)
	}); err != nil {
		t.Fatalf("Update after a panic: %v", err)
	}
}

// TestRerunSeesStoredRevision: a function that writes a device captured
// outside it, run again after another member of its batch failed, must not
// see the revision written back by the rolled-back run.
func TestRerunSeesStoredRevision(t *testing.T) {
	s := openTestDB(t)
	d := device.Device{ID: memberID(0)}
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		dd := d
		return tx.PutDevice(&dd)
	}); err != nil {
		t.Fatal(err)
	}
	d.Revision = 1
	d.State = device.Onboarded
	calls := 0
	reqs := []*request{
		{ctx: context.Background(), done: make(chan result, 1), fn: func(tx store.Tx) error {
			calls++
			return tx.PutDevice(&d) // no copy: the caller's d is written back
		}},
		{ctx: context.Background(), done: make(chan result, 1), fn: func(store.Tx) error {
			return errBoom
		}},
	}
	s.runBatch(slices.Clone(reqs))
	if res := <-reqs[0].done; res.err != nil {
		t.Fatalf("member re-run after a rollback: %v", res.err)
	}
	if res := <-reqs[1].done; !errors.Is(res.err, errBoom) {
		t.Fatalf("failing member: err = %v, want errBoom", res.err)
	}
	if calls != 2 || d.Revision != 2 {
		t.Fatalf("member ran %d times and left Revision %d, want 2 and 2", calls, d.Revision)
	}
	if err := s.View(t.Context(), func(r store.Reader) error {
		got, err := r.Device(d.ID)
		if err == nil && (got.Revision != 2 || got.State != device.Onboarded) {
			t.Errorf("stored device: Revision %d, State %s; want 2, onboarded", got.Revision, got.State)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func TestUpdateGoexit(t *testing.T) {
	s := openTestDB(t)
	err := s.Update(t.Context(), func(tx store.Tx) error {
		d := device.Device{ID: memberID(0)}
		if err := tx.PutDevice(&d); err != nil {
			return err
		}
		runtime.Goexit()
		return nil
	})
	if !errors.Is(err, ErrAborted) {
		t.Fatalf("Update: err = %v, want ErrAborted", err)
	}
	// A new committer took over and nothing of the aborted batch stayed.
	if err := s.Update(t.Context(), func(tx store.Tx) error {
		if _, err := tx.Device(memberID(0)); !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("device of the aborted Update: %v", err)
		}
		d := device.Device{ID: memberID(1)}
		return tx.PutDevice(&d)
	}); err != nil {
		t.Fatalf("Update after an aborted one: %v", err)
	}
}
