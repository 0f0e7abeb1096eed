package fleet

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/devattr"
	"github.com/embark-iot/embark/pkg/manifest"
)

// loadDevices reads the factory's devices.jsonl and keeps the first count
// (all for 0).
func loadDevices(dir string, count int) ([]*simDevice, error) {
	devs, err := factory.ReadDevices(filepath.Join(dir, "devices.jsonl"))
	if err != nil {
		return nil, fmt.Errorf("fleet: devices: %w", err)
	}
	if count > len(devs) {
		return nil, fmt.Errorf("%w: count %d, but the factory made %d devices", ErrOptions, count, len(devs))
	}
	if count > 0 {
		devs = devs[:count]
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("%w: the factory made no devices", ErrOptions)
	}
	out := make([]*simDevice, len(devs))
	for i, d := range devs {
		if d.Key == nil || len(d.Chain) == 0 {
			return nil, fmt.Errorf("%w: device %q has no IDevID key or certificate", ErrOptions, d.Serial)
		}
		raw := make([][]byte, len(d.Chain))
		for j, c := range d.Chain {
			raw[j] = c.Raw
		}
		out[i] = &simDevice{
			serial:      d.Serial,
			idevid:      tls.Certificate{Certificate: raw, PrivateKey: d.Key, Leaf: d.Chain[0]},
			idevidChain: d.Chain,
			firmware:    devattr.Reported{FirmwareVersion: d.FirmwareVersion, FirmwareSHA256: d.FirmwareSHA256},
		}
	}
	return out, nil
}

// manufacturerOf reads the manufacturer's name from the factory's trust
// bundle: with a serial, it makes the device URN.
func manufacturerOf(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, factory.TrustFile))
	if err != nil {
		return "", fmt.Errorf("fleet: manufacturer: %w", err)
	}
	t, err := manifest.ParseTrustBundle(b)
	if err != nil {
		return "", fmt.Errorf("fleet: manufacturer: %w", err)
	}
	return t.Name, nil
}
