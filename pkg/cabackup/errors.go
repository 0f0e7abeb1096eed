package cabackup

import "errors"

var (
	// ErrMalformed reports a file that is not a sealed CA backup, or a
	// key file that cannot be read.
	ErrMalformed = errors.New("cabackup: malformed")
	// ErrUnsupported reports a backup of another format version or
	// algorithm.
	ErrUnsupported = errors.New("cabackup: unsupported")
	// ErrWrongKey reports a backup sealed to another recipient key.
	ErrWrongKey = errors.New("cabackup: sealed to another key")
	// ErrOpen reports a backup that does not decrypt: it was modified, or
	// is not sealed to this key.
	ErrOpen = errors.New("cabackup: cannot open: the backup was modified or is not sealed to this key")
	// ErrContent reports a backup that decrypts but does not hold a
	// usable CA.
	ErrContent = errors.New("cabackup: backup content invalid")
	// ErrExists reports a restore that would overwrite CA files, or key
	// files that already exist.
	ErrExists = errors.New("cabackup: refusing to overwrite")
)
