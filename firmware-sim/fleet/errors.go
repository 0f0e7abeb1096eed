package fleet

import "errors"

var (
	// ErrOptions reports options that cannot work.
	ErrOptions = errors.New("fleet: bad options")

	// ErrRoot reports a root file that holds no usable certificate.
	ErrRoot = errors.New("fleet: bad root file")

	// ErrCACerts reports that the CA certificates could not be fetched
	// before the run.
	ErrCACerts = errors.New("fleet: cannot fetch the CA certificates")

	// ErrKeyMismatch reports an issued certificate whose public key is
	// not the key of the device's CSR.
	ErrKeyMismatch = errors.New("fleet: issued certificate does not carry the CSR key")

	// ErrUntrustedCert reports an issued certificate that does not chain
	// to the Embark root.
	ErrUntrustedCert = errors.New("fleet: issued certificate does not chain to the root")

	// ErrWrongIdentity reports an issued certificate that does not name
	// the device (URI SAN).
	ErrWrongIdentity = errors.New("fleet: issued certificate names another device")

	// ErrNotIdempotent reports a resent request, after an answer was
	// lost, that got a different certificate than the lost answer.
	ErrNotIdempotent = errors.New("fleet: resent request got a different certificate")

	// ErrResponseLost reports an answer dropped by the loss simulation
	// when no retry was left.
	ErrResponseLost = errors.New("fleet: answer lost")

	// ErrNotConnected reports a device that was not connected when the
	// stay ended, and saw no failure.
	ErrNotConnected = errors.New("fleet: not connected at the end of the stay")

	// ErrNotApplied reports a device that ended the stay with a command
	// it took up but did not apply, and saw no failure.
	ErrNotApplied = errors.New("fleet: command not applied by the end of the stay")

	// ErrBadCACerts reports a crts answer without the Embark root.
	ErrBadCACerts = errors.New("fleet: CA certificates without the Embark root")
)
