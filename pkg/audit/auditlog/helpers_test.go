package auditlog_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/audit/auditlog"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func mustKey(t testing.TB) *hybridsig.PrivateKey {
	t.Helper()
	k, err := hybridsig.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func openStore(t testing.TB, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func entry(i int) audit.Entry {
	return audit.Entry{Time: t0, Actor: "device", Action: "enroll", DeviceID: fmt.Sprintf("urn:dev:acme:SN%05d", i), Outcome: "ok"}
}

// appendN appends n entries, one transaction each, as the server's
// writers do.
func appendN(t testing.TB, st store.Store, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			_, err := tx.AppendAudit(entry(i))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func newCheckpointer(t testing.TB, st store.Store, k *hybridsig.PrivateKey, clock *fakeClock, opts ...auditlog.Option) *auditlog.Checkpointer {
	t.Helper()
	opts = append([]auditlog.Option{auditlog.WithClock(clock.Now)}, opts...)
	c, err := auditlog.NewCheckpointer(st, k, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkpointSeqs lists the entries that have a checkpoint record.
func checkpointSeqs(t testing.TB, st store.Store) []uint64 {
	t.Helper()
	var out []uint64
	err := st.View(context.Background(), func(rd store.Reader) error {
		return rd.Records(auditlog.CheckpointKind, "", func(k string, _ []byte) (bool, error) {
			var n uint64
			if _, err := fmt.Sscanf(k, "%d", &n); err != nil {
				return false, err
			}
			out = append(out, n)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Tampering goes straight to the bbolt file, as someone with write access
// to the data directory would. The layout is package bolt's: bucket
// "audit" maps a big-endian sequence number to the entry's CBOR (its
// sequence number left out); "records" holds one nested bucket per kind.

var enc = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

func seqKey(seq uint64) []byte {
	return []byte{byte(seq >> 56), byte(seq >> 48), byte(seq >> 40), byte(seq >> 32), byte(seq >> 24), byte(seq >> 16), byte(seq >> 8), byte(seq)}
}

func tamper(t testing.TB, path string, fn func(audit, records *bbolt.Bucket) error) {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bbolt.Tx) error {
		return fn(tx.Bucket([]byte("audit")), tx.Bucket([]byte("records")))
	}); err != nil {
		t.Fatal(err)
	}
}

func editEntry(b *bbolt.Bucket, seq uint64, fn func(*audit.Entry)) error {
	var e audit.Entry
	if err := cbor.Unmarshal(b.Get(seqKey(seq)), &e); err != nil {
		return err
	}
	fn(&e)
	v, err := enc.Marshal(&e)
	if err != nil {
		return err
	}
	return b.Put(seqKey(seq), v)
}

func checkpointRecord(records *bbolt.Bucket, seq uint64) (audit.SignedCheckpoint, error) {
	return audit.ParseSignedCheckpoint(records.Bucket([]byte(auditlog.CheckpointKind)).Get([]byte(auditlog.CheckpointKey(seq))))
}

func putCheckpointRecord(records *bbolt.Bucket, seq uint64, sc audit.SignedCheckpoint) error {
	v, err := sc.Marshal()
	if err != nil {
		return err
	}
	return records.Bucket([]byte(auditlog.CheckpointKind)).Put([]byte(auditlog.CheckpointKey(seq)), v)
}

func splice(ml, ec []byte) []byte {
	out := append([]byte(nil), ml[:hybridsig.MLDSASignatureSize]...)
	return append(out, ec[hybridsig.MLDSASignatureSize:]...)
}

func dbPath(t testing.TB) string { return filepath.Join(t.TempDir(), "registry.db") }
