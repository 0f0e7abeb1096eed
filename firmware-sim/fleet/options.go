package fleet

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
)

// Transports of a run.
const (
	// TransportCoAP is EST-coaps over DTLS or TLS (the default).
	TransportCoAP = "coap"
	// TransportMQTT is Embark's MQTT v5 API through a broker, over TLS.
	TransportMQTT = "mqtt"
)

// Modes of a run.
const (
	// ModeEnroll enrolls every device (the default).
	ModeEnroll = "enroll"
	// ModeCrts only fetches the CA certificates with each device's
	// IDevID: the ceiling of what the server's handshakes allow. Over
	// MQTT, each device connects with its IDevID and publishes once (QoS
	// 1, no answer asked): the ceiling of the broker's TLS connects.
	ModeCrts = "crts"
	// ModeBoth runs the crts pass, then the enroll pass, and reports
	// enrollment throughput as a fraction of the ceiling.
	ModeBoth = "both"
)

// Defaults of Options.
const (
	DefaultConcurrency = 64
	DefaultRetries     = 5
	DefaultTimeout     = 15 * time.Second
)

// Options describe one fleet run.
type Options struct {
	// FactoryDir is the output directory of a factory run.
	FactoryDir string
	// Transport is TransportCoAP (default) or TransportMQTT.
	Transport string
	// Target is coaps://host:port or coaps+tcp://host:port (CoAP), or
	// mqtts://host[:port] (MQTT, default port 8883).
	Target string
	// RootFile is the Embark root certificate (PEM), given out of band.
	RootFile string
	// VoucherTarget is Embark's plain CoAP BRSKI listener, coap://host[:port],
	// where zero-touch devices (no RootFile) ask for their vouchers.
	// Default: the host of Target, port estclient.DefaultVoucherPort.
	VoucherTarget string
	// Count is how many devices take part; 0 means all of the factory's.
	Count int
	// Concurrency bounds the devices at work at once. Default 64.
	Concurrency int
	// Mode is ModeEnroll (default), ModeCrts or ModeBoth.
	Mode string
	// Renew makes every enrolled device renew afterwards: a fresh session
	// with its LDevID and a CSR for a new key to sren.
	Renew bool
	// Retries bounds how often one device resends a request. Default 5;
	// a negative value means none.
	Retries int
	// Timeout bounds one handshake and one request. Default 15s.
	Timeout time.Duration
	// Progress receives a line per second while a phase runs; nil for none.
	Progress io.Writer
	// StateFile, if set, receives a JSON line per enrolled device with its
	// serial, LDevID key and certificate.
	StateFile string
	// Rate is the offered load in devices started per second; 0 starts
	// them as fast as Concurrency allows.
	Rate float64
	// Loss is the fraction of answers a device drops, in [0, 1).
	Loss float64
	// FirmwareVersion, if set, is the firmware version every device
	// reports instead of the one the factory installed (and no digest):
	// devices whose firmware was changed since they left the factory.
	FirmwareVersion string
	// Stay keeps every enrolled device connected with its LDevID for this
	// long after the other phases, following what Embark tells it (rotate,
	// revoked, zone): over MQTT the commands it publishes, over CoAP the
	// notifications of the observed status resource. A device reconnects
	// with backoff when it loses its connection. 0: no stay.
	Stay time.Duration
	// AllowNonceless makes zero-touch devices accept nonceless
	// (prefetched) vouchers; they have a clock (the simulator's).
	AllowNonceless bool
	// Logger receives what devices ignore and lose (debug level). Default:
	// discard.
	Logger *slog.Logger
}

// withDefaults fills in defaults and checks what cannot work.
func (o Options) withDefaults() (Options, error) {
	if o.FactoryDir == "" {
		return o, fmt.Errorf("%w: no factory directory", ErrOptions)
	}
	if o.Target == "" {
		return o, fmt.Errorf("%w: no target", ErrOptions)
	}
	switch o.Transport {
	case "", TransportCoAP:
		o.Transport = TransportCoAP
		if _, err := estclient.ParseTarget(o.Target); err != nil {
			return o, fmt.Errorf("%w: transport coap: %w", ErrOptions, err)
		}
	case TransportMQTT:
		if _, err := mqttclient.ParseTarget(o.Target); err != nil {
			return o, fmt.Errorf("%w: transport mqtt: %w", ErrOptions, err)
		}
	default:
		return o, fmt.Errorf("%w: transport %q is neither coap nor mqtt", ErrOptions, o.Transport)
	}
	if o.Transport == TransportCoAP && (o.RootFile == "" || o.Mode == ModeCompare) {
		if o.VoucherTarget == "" {
			t, _ := estclient.ParseTarget(o.Target)
			o.VoucherTarget = "coap://" + net.JoinHostPort(t.Host, estclient.DefaultVoucherPort)
		}
		if _, err := estclient.ParseVoucherTarget(o.VoucherTarget); err != nil {
			return o, fmt.Errorf("%w: %w", ErrOptions, err)
		}
	}
	if o.RootFile == "" && o.Transport != TransportCoAP {
		return o, fmt.Errorf("%w: no root file: zero touch (vouchers) runs over CoAP; over MQTT give the Embark root", ErrOptions)
	}
	if o.Count < 0 {
		return o, fmt.Errorf("%w: count %d < 0", ErrOptions, o.Count)
	}
	switch {
	case o.Concurrency == 0:
		o.Concurrency = DefaultConcurrency
	case o.Concurrency < 0:
		return o, fmt.Errorf("%w: concurrency %d < 0", ErrOptions, o.Concurrency)
	}
	switch o.Mode {
	case "":
		o.Mode = ModeEnroll
	case ModeEnroll, ModeBoth:
	case ModeCrts:
		if o.Renew || o.Stay != 0 {
			return o, fmt.Errorf("%w: renew and stay need enrollment (mode enroll or both)", ErrOptions)
		}
		if o.RootFile == "" {
			return o, fmt.Errorf("%w: mode crts needs the Embark root: a device without a voucher trusts no server", ErrOptions)
		}
	case ModeCompare:
		if o.RootFile == "" || o.Transport != TransportCoAP {
			return o, fmt.Errorf("%w: mode compare enrolls half the devices with the Embark root (--ca) and half zero-touch, over CoAP", ErrOptions)
		}
	default:
		return o, fmt.Errorf("%w: mode %q is none of enroll, crts, both, compare", ErrOptions, o.Mode)
	}
	switch {
	case o.Retries == 0:
		o.Retries = DefaultRetries
	case o.Retries < 0:
		o.Retries = 0
	}
	switch {
	case o.Timeout == 0:
		o.Timeout = DefaultTimeout
	case o.Timeout < 0:
		return o, fmt.Errorf("%w: timeout %s < 0", ErrOptions, o.Timeout)
	}
	if o.Rate < 0 {
		return o, fmt.Errorf("%w: rate %g < 0", ErrOptions, o.Rate)
	}
	if o.Loss < 0 || o.Loss >= 1 {
		return o, fmt.Errorf("%w: loss %g is not in [0, 1)", ErrOptions, o.Loss)
	}
	if o.Stay < 0 {
		return o, fmt.Errorf("%w: stay %s < 0", ErrOptions, o.Stay)
	}
	return o, nil
}
