package idevid

import "errors"

// Errors returned by Verify. Callers compare with errors.Is.
var (
	// ErrNoCertificate: the peer presented no certificate.
	ErrNoCertificate = errors.New("idevid: no client certificate")
	// ErrUntrusted: the chain does not lead to a trusted manufacturer root.
	ErrUntrusted = errors.New("idevid: certificate not issued by a trusted manufacturer")
	// ErrExpired: a certificate of the chain has expired.
	ErrExpired = errors.New("idevid: certificate expired")
	// ErrNotYetValid: a certificate of the chain is not valid yet.
	ErrNotYetValid = errors.New("idevid: certificate not yet valid")
	// ErrNotDeviceCert: the leaf is a CA certificate or not meant for client authentication.
	ErrNotDeviceCert = errors.New("idevid: not a device certificate")
)
