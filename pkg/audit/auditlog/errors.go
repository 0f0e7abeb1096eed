package auditlog

import "errors"

var (
	// ErrRecord reports a checkpoint or key record that cannot be read.
	ErrRecord = errors.New("auditlog: bad record")
	// ErrInvalid reports an invalid option.
	ErrInvalid = errors.New("auditlog: invalid")
)
