// Package storetest is the conformance suite of [store.Store]: every backend
// runs it from its own tests.
//
// # Basics
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			return openEmptyStore(t) // closed by t.Cleanup
//		})
//	}
//
// [Run] calls open once per subtest and expects a new, empty store each
// time; the opener arranges its own cleanup with t.Cleanup. Backends that
// keep their data in a file also run [RunPersistent], which writes, closes,
// reopens the same path and reads everything back.
//
// # What the suite assumes
//
// Subtests are named ok/... and fail/.... Beyond the contract written in
// package store, the suite fixes a few points every backend must share:
//
//   - Close may be called more than once; every call after a successful
//     first one returns nil. After Close, View, Update and Stats return
//     errors that match store.ErrClosed. The suite closes some stores
//     itself, so the opener's cleanup must tolerate an already closed store.
//   - A context that is done before View or Update is called makes them
//     return its error without running the function.
//   - CertificatesOf a device without certificates (or an unknown device)
//     returns an empty result and no error.
//   - DeviceByIDevIDKey("") finds nothing (store.ErrNotFound).
//   - Times are compared at one-second resolution: fixtures use whole
//     seconds in UTC, and what is read back must be the same instant.
//   - When Update returns an error, the revisions PutDevice wrote back into
//     the caller's devices during it are undone: the caller's device again
//     carries the stored revision. The same holds between the runs of a
//     function that is run more than once, so a function may put a device
//     it captured from outside.
//   - A refused write (wrong revision, taken IDevID key, empty identifier
//     or serial) leaves the store unchanged even when the function goes on
//     and its transaction commits.
package storetest
