package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"runtime/pprof"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/fleet"
)

// Default servers of the transports.
const (
	defaultCoAPServer = "coaps://127.0.0.1:5684"
	defaultMQTTServer = "mqtts://127.0.0.1:8883"
)

func cmdFleet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	var o fleet.Options
	var quiet, logDebug bool
	var cpuProfile string
	fs.StringVar(&o.FactoryDir, "factory", "", "output directory of firmware-sim factory (required)")
	fs.StringVar(&o.Transport, "transport", fleet.TransportCoAP, "coap (EST-coaps) or mqtt (Embark's MQTT v5 API through a broker)")
	fs.StringVar(&o.Target, "server", "", "Embark server: coaps://host:port (DTLS) or coaps+tcp://host:port (TLS); with --transport mqtt\n"+
		"the broker: mqtts://host[:port] (default "+defaultCoAPServer+", or "+defaultMQTTServer+" with --transport mqtt)")
	fs.StringVar(&o.RootFile, "ca", "", "Embark root certificate, PEM, given out of band to authenticate the server; without it (CoAP)\n"+
		"devices onboard zero-touch: a voucher from the manufacturer's MASA tells them which domain to trust")
	fs.StringVar(&o.VoucherTarget, "voucher", "", "zero touch: Embark's plain CoAP voucher listener, coap://host[:port] (default: the --server host, port "+
		estclient.DefaultVoucherPort+")")
	fs.BoolVar(&o.AllowNonceless, "allow-nonceless", false, "zero touch: devices accept nonceless (prefetched) vouchers, checking their expiry with their clock")
	fs.IntVar(&o.Count, "count", 0, "devices taking part (default: all of the factory's)")
	fs.IntVar(&o.Concurrency, "concurrency", fleet.DefaultConcurrency, "devices at work at once")
	fs.StringVar(&o.Mode, "mode", fleet.ModeEnroll, "enroll, crts (handshake and CA certificates only, over MQTT connect and one publish: the ceiling), both,\n"+
		"or compare (with --ca: half the devices enroll with the out-of-band root, half zero-touch; the ratio is the voucher's cost)")
	fs.BoolVar(&o.Renew, "renew", false, "after enrolling, every device renews with a new key")
	fs.IntVar(&o.Retries, "retries", fleet.DefaultRetries, "resends per device (0: none)")
	fs.DurationVar(&o.Timeout, "timeout", fleet.DefaultTimeout, "bound of one handshake and of one request")
	fs.Float64Var(&o.Rate, "rate", 0, "devices started per second (default: as fast as --concurrency allows)")
	fs.Float64Var(&o.Loss, "loss", 0, "fraction of answers a device drops and asks again for, in [0, 1)")
	fs.StringVar(&o.FirmwareVersion, "firmware", "", "firmware version every device reports instead of the factory's (simulates changed firmware)")
	fs.StringVar(&o.StateFile, "state", "", "write each enrolled device's serial, LDevID key and certificate to this JSON-lines file")
	fs.DurationVar(&o.Stay, "stay", 0, "keep every enrolled device connected this long, following Embark's commands (rotate, revoked, zone): over MQTT its command topic, over CoAP its observed status resource")
	fs.BoolVar(&logDebug, "debug", false, "log what devices ignore or lose on stderr")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the simulator to this file")
	fs.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: firmware-sim fleet --factory DIR --server URI [--ca FILE] [--transport coap|mqtt] [flags]\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	switch {
	case o.FactoryDir == "":
		return usageError(stderr, fs, "--factory is required")
	case o.Retries == 0:
		// 0 on the command line means no resends; Options takes that as -1.
		o.Retries = -1
	}
	if o.Target == "" {
		o.Target = defaultCoAPServer
		if o.Transport == fleet.TransportMQTT {
			o.Target = defaultMQTTServer
		}
	}
	if !quiet {
		o.Progress = stderr
	}
	if logDebug {
		o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	// The simulator shares the machine with the server it measures; it
	// allocates a lot per handshake and has memory to spare, so it
	// collects garbage less often unless GOGC says otherwise.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "firmware-sim fleet: %v\n", err)
			return exitFailed
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "firmware-sim fleet: cpu profile: %v\n", err)
			return exitFailed
		}
		defer pprof.StopCPUProfile()
	}

	reports, err := fleet.Run(ctx, o)
	for _, r := range reports {
		fmt.Fprintln(stdout, r)
	}
	if err != nil {
		fmt.Fprintf(stderr, "firmware-sim fleet: %v\n", err)
		if errors.Is(err, fleet.ErrOptions) {
			return exitUsage
		}
		return exitFailed
	}
	for _, r := range reports {
		if r.FailedCount() > 0 {
			return exitFailed
		}
	}
	return exitOK
}
