package factory

import "errors"

var (
	// ErrOptions reports options that cannot be used.
	ErrOptions = errors.New("invalid options")
	// ErrInconsistent reports an output directory whose files do not belong
	// together (a partial CA, a manifest not signed by the directory's key,
	// devices.jsonl and manifest.json listing different devices).
	ErrInconsistent = errors.New("inconsistent output directory")
	// ErrMalformed reports a devices.jsonl line or PEM file that cannot be
	// decoded.
	ErrMalformed = errors.New("malformed")
)
