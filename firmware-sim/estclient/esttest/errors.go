package esttest

import "errors"

// ErrUnknownTransport is returned by Start for a transport other than
// coaps and coaps+tcp.
var ErrUnknownTransport = errors.New("esttest: unknown transport")
