// Command embark is the Embark device onboarding and identity lifecycle
// server and its operator CLI. Run "embark help" for the commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name, usage, help string
	run               func(ctx context.Context, args []string, out io.Writer) error
}

func commands() []command {
	return []command{
		{"init", "init [--data DIR]", "create the data directory: configuration, root and intermediate CA", runInit},
		{"serve", "serve [--data DIR] [--udp ADDR] [--tcp ADDR] [--mqtt ADDR] [--https ADDR] [--log-level L]", "run the server (initialises an empty data directory)", runServe},
		{"status", "status [--data DIR]", "show server and registry status", runStatus},
		{"manufacturer", "manufacturer trust FILE | list | distrust NAME --reason R [--key KEYID] | masa NAME [URL]", "trust a manufacturer; list; withdraw trust; set its voucher service (MASA)", runManufacturer},
		{"voucher", voucherUsage, "nonceless vouchers from the manufacturers' MASAs for sites that onboard offline", runVoucher},
		{"provenance", "provenance import FILE | transfer ...", "import a signed manufacturer manifest; transfer ownership", runProvenance},
		{"vuln", "vuln import FILE | show MANUFACTURER MODEL FIRMWARE", "import CycloneDX SBOM/VEX documents; show a product's open vulnerabilities", runVuln},
		{"device", "device list [--state S] [--limit N] | show ID | approve|deny|revoke|decommission|reonboard ID [--reason R] | rotate ID [--campaign C] | desired ID", "list and show devices; operator actions; commands over MQTT", runDevice},
		{"mqtt", "mqtt mosquitto-config --out DIR --trust trust.json [--trust ...] [--port 8883 --service-port 8884 --bind ADDR]", "write a Mosquitto 2 configuration, ACLs and certificates for using Mosquitto as Embark's broker", runMQTT},
		{"rotate", rotateUsage, "rotation campaigns: re-key devices at a bounded rate; follow and cancel them", runRotate},
		{"cert", "cert expiring [--within 72h]", "current certificates that expire soon", runCert},
		{"policy", "policy check FILE | explain DEVICE [--file F] | test FILE [--all]", "check a policy file; explain a device's decision; dry-run a policy over the fleet", runPolicy},
		{"audit", "audit list [--after N] [--limit N] | verify [--bundle FILE] [--key PUB] | export --out FILE", "print audit log entries; verify the hash chain and signed checkpoints; export a bundle that verifies offline", runAudit},
		{"ca", caUsage, "seal the CA keys to an X-Wing key (HPKE); restore them; roll over to a new intermediate (or root), show and retire intermediates", runCA},
		{"operator", "operator add NAME --role admin|operator|auditor [--out DIR] | list | remove NAME [--reason R]", "operator certificates for the HTTPS admin API", runOperator},
		{"version", "version", "print the version", runVersion},
	}
}

// errUsage marks errors that should print usage (exit code 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, out, errOut io.Writer) int {
	ctx, args, err := globalFlags(ctx, args)
	if err != nil {
		fmt.Fprintf(errOut, "embark: %v\n", err)
		usage(errOut)
		return 2
	}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(out)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], out)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(errOut, "embark: %v\nusage: embark %s\n", err, c.usage)
			return 2
		default:
			fmt.Fprintf(errOut, "embark %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(errOut, "embark: unknown command %q\n", args[0])
	usage(errOut)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "embark — device onboarding and identity lifecycle server")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-62s %s\n", c.usage, c.help)
	}
	fmt.Fprintln(w, "\nThe data directory defaults to $EMBARK_DATA, else ./embark-data.")
	fmt.Fprintln(w, "While `embark serve` runs, the other commands talk to it over DIR/admin.sock.")
	fmt.Fprintln(w, "\nRemote: embark --server https://HOST:8443 --cert NAME.crt --key NAME.key --ca server-ca.crt COMMAND ...")
	fmt.Fprintln(w, "(or EMBARK_SERVER, EMBARK_CERT, EMBARK_KEY, EMBARK_CA) talks to the HTTPS admin API with an operator certificate.")
}
