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

// Exit codes.
const (
	exitOK     = 0
	exitFailed = 1
	exitUsage  = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `usage:
  firmware-sim factory --count N --out DIR [flags]   mint a manufacturer CA, devices and a signed manifest
  firmware-sim fleet --factory DIR --server URI [--ca FILE] [--transport coap|mqtt] [flags]
                                                      run the simulated devices against an Embark server
  firmware-sim masa --factory DIR [--listen ADDR]       serve the manufacturer's voucher service (MASA)
  firmware-sim version                                print the version
Run "firmware-sim COMMAND -h" for the flags of a command.
`

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "factory":
		return cmdFactory(ctx, args[1:], stdout, stderr)
	case "fleet":
		return cmdFleet(ctx, args[1:], stdout, stderr)
	case "masa":
		return cmdMASA(ctx, args[1:], stdout, stderr)
	case "version":
		return cmdVersion(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "firmware-sim: unknown command %q\n%s", args[0], usageText)
		return exitUsage
	}
}

// parseFlags parses args into fs and refuses positional arguments. It
// returns the exit code to use when parsing ended the command.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (int, bool) {
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK, false
		}
		return exitUsage, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "firmware-sim %s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		fs.Usage()
		return exitUsage, false
	}
	return 0, true
}

// usageError prints a message about the command line and returns exitUsage.
func usageError(stderr io.Writer, fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(stderr, "firmware-sim %s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return exitUsage
}
