// Package bolt is the default [store.Store] backend: one go.etcd.io/bbolt
// file in the data directory.
//
// # Basics
//
// [Open] creates or opens the file (mode 0600) and takes bbolt's exclusive
// file lock; a second process trying to open the same registry fails with
// [ErrLocked] after a short timeout instead of hanging. Records are CBOR
// (core deterministic encoding) in these buckets:
//
//	devices       device id                  -> device (id omitted, it is the key)
//	idevid        hex SHA-256 of IDevID SPKI -> device id
//	certs         big-endian uint64 seq      -> certificate
//	cert_serials  serial (lower-case hex)    -> certs seq
//	device_certs  device id 0x00 certs seq   -> empty
//	manufacturers name                       -> manufacturer
//	audit         big-endian uint64 seq      -> audit entry (seq omitted)
//	meta          "schema"                   -> schema version
//
// Keys are chosen for space. Certificates, the largest records (their DER
// is most of a device's footprint), are stored in issue order under a
// sequence number, so new ones are appended to full pages instead of being
// inserted at random serials into half-empty ones; the serial index finds
// them. Appending buckets (certs, audit) split pages full, the devices
// bucket leaves a quarter free on each page for records to grow after
// import, and the file grows in 1 MiB steps. A device after one enrollment
// and one renewal takes about 3.8 KiB (TestSizePerDevice,
// BenchmarkRegistrySize).
//
// Times are stored as whole seconds since the epoch and read back in UTC,
// the resolution the audit hash chain covers; sub-second parts are dropped.
//
// # Group commit
//
// Every commit ends with an fsync (bbolt's NoSync is never set), which costs
// hundreds of microseconds. [DB.Update] therefore hands its function to one
// committer goroutine. The committer takes the first waiting request, drains
// whatever else is already queued (up to [WithMaxBatch], default
// [DefaultMaxBatch]) without waiting for more, and runs the functions one
// after the other in a single bbolt transaction: one fsync for the batch.
// An idle store commits a lone request at once; there is no batching delay.
//
// When one function of a batch returns an error the whole transaction is
// rolled back; the members before the failing one are committed again as a
// batch, the failing one runs alone so that its caller gets its own result,
// and the members after it form a new batch. A function may therefore run
// more than once, as package store documents: it must only read and write
// through its Tx. A caller whose context ends before its batch starts gets
// the context's error and its function does not run; once the function has
// started, Update waits for the outcome. A function that panics is re-run
// alone and its panic is raised again in the goroutine that called Update.
//
// [store.Tx.PutDevice] writes the new revision back into the caller's
// device. When a transaction is rolled back those write-backs are undone,
// so a function run again, or a caller whose Update failed, holds the
// revision the store still has.
//
// [DB.View] runs in a bbolt read transaction directly and does not wait for
// the committer.
//
// # Caveats
//
// Values returned by the Reader are decoded copies; no byte slice of a bbolt
// transaction escapes it.
//
// All Update functions run one after the other on the committer goroutine:
// a slow function delays every other writer. A function must not call
// View or Update itself (the committer would wait for itself).
//
// Commits are durable: each ends with fdatasync, and a process killed at any
// moment leaves every acknowledged Update in the file (TestCrashChild).
package bolt
