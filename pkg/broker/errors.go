package broker

import "errors"

// Errors returned by this package. They are wrapped with details; test with
// errors.Is.
var (
	// ErrInvalidConfig: a Config or option cannot be used (no certificate,
	// no Authenticator, packet size out of range).
	ErrInvalidConfig = errors.New("invalid broker configuration")
	// ErrClosed: the broker has been closed.
	ErrClosed = errors.New("broker closed")
	// ErrInvalidFilter: a topic filter or name is malformed.
	ErrInvalidFilter = errors.New("invalid topic filter")
	// ErrInvalidIdentity: an Authenticator returned an identity the broker
	// cannot use (unknown kind, empty ID, a device ID that is not a single
	// topic level, a serial that is not the leaf's).
	ErrInvalidIdentity = errors.New("invalid identity")
	// ErrInvalidServiceName: a service name is not [a-z0-9][a-z0-9.-]{0,62}.
	ErrInvalidServiceName = errors.New("invalid service name")
	// ErrServiceFiles: the service CA or certificate files in a directory
	// exist but cannot be used (unreadable, malformed, key mismatch, expired
	// CA).
	ErrServiceFiles = errors.New("unusable service identity files")
	// ErrInvalidOption: an Option was given an unusable value.
	ErrInvalidOption = errors.New("invalid option")
)

// refusedError is why the broker refused a CONNECT: the refusal log line
// carries Reason and Err; the client receives Code and Reason.
type refusedError struct {
	// Code is the MQTT v5 CONNACK reason code sent to the client.
	Code byte
	// Reason says why, for the log.
	Reason string
	// Err is the underlying error, if any (for example the Authenticator's).
	Err error
}

func (e *refusedError) Error() string {
	if e.Err != nil {
		return "connect refused: " + e.Reason + ": " + e.Err.Error()
	}
	return "connect refused: " + e.Reason
}

func (e *refusedError) Unwrap() error { return e.Err }
