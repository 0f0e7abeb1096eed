package bolt

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// request is one Update waiting for the committer.
type request struct {
	ctx  context.Context
	fn   func(store.Tx) error
	done chan result // buffered: the committer never blocks on an answer
}

// result answers a request.
type result struct {
	err        error
	panicked   bool
	panicValue any
}

// commitLoop is the committer goroutine. It returns when Close is called;
// Updates that have not been handed over by then get ErrClosed in Update.
func (s *DB) commitLoop() {
	batch := make([]*request, 0, s.maxBatch)
	stopped := false
	defer func() {
		if stopped {
			close(s.stopped)
			return
		}
		// An Update function ended the goroutine with runtime.Goexit (a
		// test calling t.FailNow inside it). bbolt has rolled back the
		// transaction in progress; answer the members of the batch not
		// answered yet and carry on in a new goroutine. Answers are sent
		// without blocking, so members answered before keep theirs.
		s.log.Error("update function exited the committer goroutine; batch rolled back", "batch", len(batch))
		for _, r := range batch {
			select {
			case r.done <- result{err: fmt.Errorf("bolt: update: %w", ErrAborted)}:
			default:
			}
		}
		go s.commitLoop()
	}()
	for {
		if s.isClosing() {
			stopped = true
			return
		}
		var first *request
		select {
		case <-s.closing:
			stopped = true
			return
		case first = <-s.reqs:
		}
		batch = append(batch[:0], first)
		// Let the callers answered by the previous commit run up to their
		// next Update before draining: it costs nothing when the store is
		// idle and doubles the batches under load. It is a yield, not a
		// wait; nothing here ever sleeps.
		runtime.Gosched()
	drain:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		s.runBatch(slices.Clone(batch))
		clear(batch)
	}
}

// runBatch answers the members whose context has ended and commits the rest.
func (s *DB) runBatch(batch []*request) {
	live := batch[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- result{err: fmt.Errorf("bolt: update: %w", err)}
			continue
		}
		live = append(live, r)
	}
	s.commit(live)
}

// commit runs reqs in one transaction and answers each of them. When member
// i fails, the transaction is rolled back, reqs[:i] are committed again as a
// batch, reqs[i] runs alone for its own result, and reqs[i+1:] go on as the
// next batch. Every member is answered exactly once.
func (s *DB) commit(reqs []*request) {
	for len(reqs) > 0 {
		if len(reqs) == 1 {
			reqs[0].done <- s.updateAlone(reqs[0])
			return
		}
		failed, err := s.updateTogether(reqs)
		if failed < 0 {
			// Committed (err == nil) or the commit itself failed: the same
			// answer holds for every member.
			for _, r := range reqs {
				r.done <- result{err: err}
			}
			return
		}
		s.log.Debug("group commit rolled back; retrying without the failing member",
			"batch", len(reqs), "failed", failed)
		s.commit(reqs[:failed])
		reqs[failed].done <- s.updateAlone(reqs[failed])
		reqs = reqs[failed+1:]
	}
}

// updateTogether runs every member in one transaction. It returns the index
// of the first member whose function failed (the transaction is then rolled
// back), or -1 and the commit's error.
func (s *DB) updateTogether(reqs []*request) (failed int, err error) {
	failed = -1
	var undo undoLog
	err = s.bdb.Update(func(btx *bbolt.Tx) error {
		for i, r := range reqs {
			if res := call(r.fn, &tx{btx: btx, undo: &undo}); res.err != nil || res.panicked {
				failed = i
				return errRollback
			}
		}
		return nil
	})
	if failed >= 0 || err != nil {
		undo.restore()
	}
	if failed >= 0 {
		return failed, nil
	}
	if err != nil {
		s.log.Error("commit failed", "batch", len(reqs), "err", err)
		return -1, fmt.Errorf("bolt: commit: %w", err)
	}
	s.commits.Add(1)
	s.ops.Add(uint64(len(reqs)))
	return -1, nil
}

// updateAlone runs one member in its own transaction.
func (s *DB) updateAlone(r *request) result {
	var (
		res  result
		undo undoLog
	)
	err := s.bdb.Update(func(btx *bbolt.Tx) error {
		res = call(r.fn, &tx{btx: btx, undo: &undo})
		if res.err != nil || res.panicked {
			return errRollback
		}
		return nil
	})
	if res.err != nil || res.panicked || err != nil {
		undo.restore()
	}
	if res.err != nil || res.panicked {
		return res
	}
	if err != nil {
		s.log.Error("commit failed", "batch", 1, "err", err)
		return result{err: fmt.Errorf("bolt: commit: %w", err)}
	}
	s.commits.Add(1)
	s.ops.Add(1)
	return result{}
}

// undoLog remembers the revisions PutDevice wrote back into callers'
// devices during a transaction. When the transaction is rolled back they
// are restored, so that a function run again, or a caller whose Update
// failed, sees the revision the store still holds.
type undoLog []revisionUndo

type revisionUndo struct {
	d   *device.Device
	rev uint64
}

func (u *undoLog) record(d *device.Device, rev uint64) {
	*u = append(*u, revisionUndo{d: d, rev: rev})
}

// restore undoes the write-backs, newest first.
func (u *undoLog) restore() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i].d.Revision = (*u)[i].rev
	}
	*u = (*u)[:0]
}

// errRollback makes bbolt roll a transaction back; it never reaches a caller.
var errRollback = errors.New("bolt: rollback")

// call runs fn on t and turns a panic into a result, so that one caller's
// panic neither kills the committer nor fails the other members.
func call(fn func(store.Tx) error, t *tx) (res result) {
	defer func() {
		if p := recover(); p != nil {
			res = result{panicked: true, panicValue: p}
		}
	}()
	return result{err: fn(t)}
}
