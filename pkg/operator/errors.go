package operator

import "errors"

// Errors of this package. Callers compare with errors.Is.
var (
	// ErrName: an operator name outside [a-z0-9][a-z0-9._-]{0,62}.
	ErrName = errors.New("operator: invalid name")
	// ErrRole: a role other than admin, operator or auditor.
	ErrRole = errors.New("operator: invalid role")
	// ErrNotOperator: a certificate without exactly one operator URI SAN.
	ErrNotOperator = errors.New("operator: not an operator certificate")
	// ErrExists: an operator with that name is already registered.
	ErrExists = errors.New("operator: already registered")
	// ErrUnknown: no registered operator holds that certificate.
	ErrUnknown = errors.New("operator: unknown operator")
	// ErrRemoved: the certificate's serial is on the deny list.
	ErrRemoved = errors.New("operator: removed")
	// ErrKey: an unusable key (type, size, file permissions).
	ErrKey = errors.New("operator: unusable key")
	// ErrLifetime: a certificate lifetime out of range.
	ErrLifetime = errors.New("operator: invalid lifetime")
	// ErrNoCA: the directory holds no operator CA.
	ErrNoCA = errors.New("operator: no operator CA")
	// ErrIncompleteCA: the directory holds part of an operator CA.
	ErrIncompleteCA = errors.New("operator: incomplete operator CA")
	// ErrBadCA: the CA files are malformed or do not match.
	ErrBadCA = errors.New("operator: invalid operator CA")
)
