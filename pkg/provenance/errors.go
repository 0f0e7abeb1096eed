package provenance

import "errors"

// Errors of this package. Callers compare with errors.Is; manifest and
// store errors are wrapped, not replaced.
var (
	// ErrUntrustedManufacturer: the manifest names a manufacturer that is
	// not trusted, or is signed by another manufacturer's key.
	ErrUntrustedManufacturer = errors.New("provenance: manufacturer not trusted")
	// ErrStaleRevision: the manifest is older than the one imported before.
	ErrStaleRevision = errors.New("provenance: manifest revision older than the one stored")
	// ErrKeyChanged: the manifest gives a known serial another IDevID key,
	// or gives a key already registered to another device.
	ErrKeyChanged = errors.New("provenance: IDevID key conflicts with the registry")
	// ErrBadBundle: the trust bundle is malformed.
	ErrBadBundle = errors.New("provenance: bad trust bundle")
)
