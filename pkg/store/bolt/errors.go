package bolt

import "errors"

// Errors of the bolt backend. The errors of package store (ErrNotFound,
// ErrConflict, ErrClosed) are returned wrapped; compare with errors.Is.
var (
	// ErrLocked: another process (or another handle in this one) holds the
	// registry file open. Only one embark serve may own a data directory.
	ErrLocked = errors.New("bolt: registry locked by another process")
	// ErrInvalid: a record or an option that the store refuses to write or
	// use, such as an empty device identifier or a serial that is not
	// lower-case hex. Nothing was written.
	ErrInvalid = errors.New("bolt: invalid argument")
	// ErrAborted: an Update function ended its goroutine with
	// runtime.Goexit (t.FailNow called inside it); the batch it ran in was
	// rolled back.
	ErrAborted = errors.New("bolt: update aborted: its function called runtime.Goexit")
	// ErrSchema: the file was written by a newer, incompatible version.
	ErrSchema = errors.New("bolt: unsupported registry schema")
)
