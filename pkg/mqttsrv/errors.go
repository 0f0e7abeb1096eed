package mqttsrv

import "errors"

var (
	// ErrConfig: the configuration cannot work.
	ErrConfig = errors.New("mqttsrv: bad configuration")
)
