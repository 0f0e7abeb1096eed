package pki

import "errors"

// Errors returned by this package. They are wrapped with details; test with
// errors.Is.
var (
	// ErrNoCA: the directory holds no CA.
	ErrNoCA = errors.New("no CA in directory")
	// ErrIncompleteCA: the directory holds part of a CA; Init refuses to
	// create a new one over it.
	ErrIncompleteCA = errors.New("incomplete CA in directory")
	// ErrKeyPermissions: a private key file is readable by group or others.
	ErrKeyPermissions = errors.New("private key file permissions too open")
	// ErrKeyMismatch: a private key does not belong to its certificate.
	ErrKeyMismatch = errors.New("private key does not match certificate")
	// ErrChainMismatch: the CA certificates do not form a chain.
	ErrChainMismatch = errors.New("CA certificates do not chain")
	// ErrMalformed: a certificate or key file cannot be parsed.
	ErrMalformed = errors.New("malformed certificate or key")
	// ErrInvalidOption: an Option was given an unusable value.
	ErrInvalidOption = errors.New("invalid option")
	// ErrTemplate: a certificate template is broken, or produced a
	// certificate that is not a valid LDevID.
	ErrTemplate = errors.New("certificate template")

	// ErrKeyType: the public key is not ECDSA P-256, P-384 or Ed25519.
	ErrKeyType = errors.New("unsupported public key type")
	// ErrDeviceID: the device identifier is not a valid URN.
	ErrDeviceID = errors.New("invalid device identifier")
	// ErrLifetime: the requested lifetime is not positive or would outlive
	// the issuing CA.
	ErrLifetime = errors.New("invalid certificate lifetime")
	// ErrNoSANs: a server certificate was requested without names.
	ErrNoSANs = errors.New("server certificate needs at least one DNS name or IP address")

	// ErrNotIssuedHere: the certificate was not issued by this CA's
	// intermediate.
	ErrNotIssuedHere = errors.New("certificate not issued by this CA")
	// ErrExpired: the certificate (or a CA certificate) is past its NotAfter.
	ErrExpired = errors.New("certificate expired")
	// ErrNotYetValid: the certificate is before its NotBefore.
	ErrNotYetValid = errors.New("certificate not yet valid")
	// ErrNotLDevID: the certificate was issued here but is not an LDevID
	// (a CA, no clientAuth, or no device URN).
	ErrNotLDevID = errors.New("certificate is not an LDevID")

	// ErrRetired: the certificate was issued by an intermediate that has
	// been retired. It comes wrapped together with ErrNotIssuedHere.
	ErrRetired = errors.New("issuing intermediate retired")
	// ErrUnknownIssuer: no intermediate of this CA has that key id.
	ErrUnknownIssuer = errors.New("unknown intermediate")
	// ErrActiveIssuer: the active intermediate cannot be retired; roll
	// over first.
	ErrActiveIssuer = errors.New("intermediate is the active one")
	// ErrIssuerInUse: live certificates still chain to the intermediate.
	// The CA does not know the registry: callers that do return it.
	ErrIssuerInUse = errors.New("live certificates chain to the intermediate")
	// ErrNoCADir: the CA has no directory (made by New) and cannot roll
	// over or retire.
	ErrNoCADir = errors.New("CA has no directory")
	// ErrRootKeyOffline: a rollover needs the root key, which is not in
	// the CA directory.
	ErrRootKeyOffline = errors.New("root key not in the CA directory")
	// ErrState: the rollover state file is malformed or does not match the
	// certificates.
	ErrState = errors.New("CA state file")
)
