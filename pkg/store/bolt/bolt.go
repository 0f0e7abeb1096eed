package bolt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/embark-iot/embark/pkg/store"
)

const (
	// DefaultMaxBatch is how many Update functions one commit holds at most.
	DefaultMaxBatch = 128
	// DefaultLockTimeout is how long Open waits for the file lock.
	DefaultLockTimeout = time.Second
	// growStep is how much the file grows beyond what a commit needs once
	// it is larger than growStep (bbolt's AllocSize; its default of 16 MiB
	// would leave up to 16 MiB unused at the end of the file). Every growth
	// costs a truncate and an fsync, so steps stay well above a commit's size.
	growStep = 1 << 20
	// schemaVersion is written to the meta bucket of every new registry.
	schemaVersion = 1
)

// DB is a [store.Store] backed by one bbolt file. It is safe for concurrent
// use. Create it with [Open] and release it with [DB.Close].
type DB struct {
	bdb         *bbolt.DB
	path        string
	log         *slog.Logger
	maxBatch    int
	lockTimeout time.Duration

	reqs      chan *request // unbuffered: a waiting sender is a queued request
	closing   chan struct{} // closed by Close
	stopped   chan struct{} // closed when the committer has returned
	closeOnce sync.Once
	closeErr  error

	commits atomic.Uint64 // transactions committed by the committer (fsyncs)
	ops     atomic.Uint64 // Update functions committed
}

var _ store.Store = (*DB)(nil)

// Option configures a [DB] at [Open].
type Option func(*DB) error

// WithLogger sets the logger (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(s *DB) error {
		if l == nil {
			return fmt.Errorf("logger: %w: nil", ErrInvalid)
		}
		s.log = l
		return nil
	}
}

// WithMaxBatch sets how many Update functions one commit holds at most
// (default [DefaultMaxBatch]). 1 turns group commit off.
func WithMaxBatch(n int) Option {
	return func(s *DB) error {
		if n < 1 {
			return fmt.Errorf("max batch %d: %w: want at least 1", n, ErrInvalid)
		}
		s.maxBatch = n
		return nil
	}
}

// WithLockTimeout sets how long [Open] waits for the file lock before it
// fails with [ErrLocked] (default [DefaultLockTimeout]).
func WithLockTimeout(d time.Duration) Option {
	return func(s *DB) error {
		if d <= 0 {
			return fmt.Errorf("lock timeout %v: %w: want a positive duration", d, ErrInvalid)
		}
		s.lockTimeout = d
		return nil
	}
}

// Open opens the registry at path, creating the file with mode 0600 if it
// does not exist. The directory must exist. If another process holds the
// file, Open fails with [ErrLocked] after the lock timeout.
func Open(path string, opts ...Option) (*DB, error) {
	s := &DB{
		path:        path,
		log:         slog.New(slog.DiscardHandler),
		maxBatch:    DefaultMaxBatch,
		lockTimeout: DefaultLockTimeout,
		reqs:        make(chan *request),
		closing:     make(chan struct{}),
		stopped:     make(chan struct{}),
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, fmt.Errorf("bolt: open %s: %w", path, err)
		}
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: s.lockTimeout})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, fmt.Errorf("bolt: open %s: %w", path, ErrLocked)
	}
	if err != nil {
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	bdb.AllocSize = growStep
	if err := initSchema(bdb); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("bolt: open %s: %w", path, err)
	}
	s.bdb = bdb
	go s.commitLoop()
	s.log.Debug("registry opened", "path", path, "max_batch", s.maxBatch)
	return s, nil
}

// initSchema creates the buckets of a new registry and checks the schema
// version of an existing one.
func initSchema(bdb *bbolt.DB) error {
	return bdb.Update(func(btx *bbolt.Tx) error {
		for _, name := range allBuckets {
			if _, err := btx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		meta := btx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		if v == nil {
			return meta.Put(keySchema, []byte{schemaVersion})
		}
		if len(v) != 1 || v[0] != schemaVersion {
			return fmt.Errorf("%w: version %x, want %d", ErrSchema, v, schemaVersion)
		}
		return nil
	})
}

// Path returns the file the registry lives in.
func (s *DB) Path() string { return s.path }

func (s *DB) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// View runs fn in a read-only transaction. fn's error is returned as is.
func (s *DB) View(ctx context.Context, fn func(store.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: view: %w", err)
	}
	if s.isClosing() {
		return fmt.Errorf("bolt: view: %w", store.ErrClosed)
	}
	var fnErr error
	err := s.bdb.View(func(btx *bbolt.Tx) error {
		fnErr = fn(&tx{btx: btx})
		return fnErr
	})
	switch {
	case fnErr != nil:
		return fnErr
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return fmt.Errorf("bolt: view: %w", store.ErrClosed)
	case err != nil:
		return fmt.Errorf("bolt: view: %w", err)
	}
	return nil
}

// Update runs fn in a read-write transaction, grouped with other concurrent
// Updates into one durable commit (see the package documentation). fn's
// error is returned as is and nothing fn wrote is kept.
func (s *DB) Update(ctx context.Context, fn func(store.Tx) error) error {
	if fn == nil {
		return fmt.Errorf("bolt: update: %w: nil function", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("bolt: update: %w", err)
	}
	r := &request{ctx: ctx, fn: fn, done: make(chan result, 1)}
	select {
	case s.reqs <- r:
	case <-s.closing:
		return fmt.Errorf("bolt: update: %w", store.ErrClosed)
	case <-ctx.Done():
		return fmt.Errorf("bolt: update: %w", ctx.Err())
	}
	res := <-r.done
	if res.panicked {
		// fn panicked in the committer; raise it where it belongs.
		panic(res.panicValue)
	}
	return res.err
}

// Stats counts the records of the registry and reports its file size.
func (s *DB) Stats(ctx context.Context) (store.Stats, error) {
	var st store.Stats
	if err := ctx.Err(); err != nil {
		return st, fmt.Errorf("bolt: stats: %w", err)
	}
	if s.isClosing() {
		return st, fmt.Errorf("bolt: stats: %w", store.ErrClosed)
	}
	err := s.bdb.View(func(btx *bbolt.Tx) error {
		st.Devices = btx.Bucket(bucketDevices).Stats().KeyN
		st.Certificates = btx.Bucket(bucketCerts).Stats().KeyN
		st.AuditEntries = btx.Bucket(bucketAudit).Stats().KeyN
		fi, err := os.Stat(s.path)
		if err != nil {
			return err
		}
		st.Bytes = fi.Size()
		return nil
	})
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return store.Stats{}, fmt.Errorf("bolt: stats: %w", store.ErrClosed)
	}
	if err != nil {
		return store.Stats{}, fmt.Errorf("bolt: stats: %w", err)
	}
	return st, nil
}

// Close stops accepting Updates, lets the batch in progress finish, answers
// every Update still waiting with [store.ErrClosed] and closes the file.
// Calling Close again returns the first call's result.
func (s *DB) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		<-s.stopped
		if err := s.bdb.Close(); err != nil {
			s.closeErr = fmt.Errorf("bolt: close: %w", err)
		}
		s.log.Debug("registry closed", "path", s.path,
			"commits", s.commits.Load(), "updates", s.ops.Load())
	})
	return s.closeErr
}
