package mqttclient

import "errors"

var (
	// ErrTarget reports a target that is not mqtts:// followed by a host
	// and an optional port.
	ErrTarget = errors.New("mqttclient: bad target")

	// ErrConfig reports a configuration that cannot work, such as a
	// missing root pool or client certificate.
	ErrConfig = errors.New("mqttclient: bad configuration")

	// ErrHandshake wraps every failure to open the TLS connection,
	// including a broker certificate that does not chain to the roots or
	// does not carry the expected name, and a client certificate the
	// broker refused with an alert.
	ErrHandshake = errors.New("mqttclient: handshake failed")

	// ErrRefused reports a broker that ended the connection after the TLS
	// handshake and before CONNACK, with an alert, a close or a reset: over
	// TLS 1.3 that is how a refused client certificate shows. It comes
	// wrapped with ErrHandshake.
	ErrRefused = errors.New("mqttclient: the broker ended the session before CONNACK")

	// ErrSubscribe reports a subscription the broker refused.
	ErrSubscribe = errors.New("mqttclient: subscription refused")

	// ErrPublishRefused reports a PUBACK with a failure reason code.
	ErrPublishRefused = errors.New("mqttclient: publish refused")

	// ErrResponse reports a verified answer the device cannot use: for
	// another operation, without the request's nonce, a certificate that
	// does not parse, an unknown status.
	ErrResponse = errors.New("mqttclient: unusable response")

	// ErrConnectionLost reports a connection that ended while a request
	// waited for its answer.
	ErrConnectionLost = errors.New("mqttclient: connection lost")

	// ErrClosed reports a request on a closed connection.
	ErrClosed = errors.New("mqttclient: connection closed")

	// ErrKeyMismatch reports an issued certificate that does not carry
	// the key of the CSR.
	ErrKeyMismatch = errors.New("mqttclient: issued certificate does not carry the CSR key")

	// ErrWrongIdentity reports an issued certificate that does not name
	// the device (URI SAN).
	ErrWrongIdentity = errors.New("mqttclient: issued certificate names another device")

	// ErrUntrustedCert reports an issued certificate that does not chain
	// to the roots.
	ErrUntrustedCert = errors.New("mqttclient: issued certificate does not chain to the root")
)
