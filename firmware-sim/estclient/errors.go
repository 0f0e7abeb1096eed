package estclient

import "errors"

var (
	// ErrTarget reports a target that is not coaps:// or coaps+tcp://
	// followed by a host and an optional port.
	ErrTarget = errors.New("estclient: bad target")

	// ErrConfig reports a configuration that cannot work, such as a
	// missing root pool.
	ErrConfig = errors.New("estclient: bad configuration")

	// ErrHandshake wraps every failure to open the secure session,
	// including a server certificate that does not chain to the roots or
	// does not carry the expected name.
	ErrHandshake = errors.New("estclient: handshake failed")

	// ErrResponse reports a success answer the client cannot use: a wrong
	// content format, a payload that does not parse, no certificate.
	ErrResponse = errors.New("estclient: unusable response")

	// ErrClosed reports a request on a closed client.
	ErrClosed = errors.New("estclient: client closed")

	// ErrNotObserved reports a status observation the server did not
	// register (it answered without Observe): poll instead.
	ErrNotObserved = errors.New("estclient: observation not registered")

	// ErrSessionLost ends a status observation whose session ended or
	// stopped answering pings.
	ErrSessionLost = errors.New("estclient: session lost")

	// ErrObservationCanceled ends a status observation the device
	// canceled.
	ErrObservationCanceled = errors.New("estclient: observation canceled")
)
