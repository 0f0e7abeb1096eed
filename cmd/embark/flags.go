package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/server"
)

func defaultDataDir() string {
	if d := os.Getenv("EMBARK_DATA"); d != "" {
		return d
	}
	return "embark-data"
}

func newFlags(name string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	data := fs.String("data", defaultDataDir(), "data directory")
	return fs, data
}

// parse parses flags that may come before or after positional arguments
// and returns the positional ones.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if err == flag.ErrHelp {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// remote says how to reach a server over its HTTPS admin API.
type remote struct{ server, cert, key, ca string }

type remoteKey struct{}

// globalFlags reads the options given before the command name (--server,
// --cert, --key, --ca); each defaults to its environment variable
// (EMBARK_SERVER, EMBARK_CERT, EMBARK_KEY, EMBARK_CA). It returns the
// context carrying them and the remaining arguments.
func globalFlags(ctx context.Context, args []string) (context.Context, []string, error) {
	rm := remote{server: os.Getenv("EMBARK_SERVER"), cert: os.Getenv("EMBARK_CERT"), key: os.Getenv("EMBARK_KEY"), ca: os.Getenv("EMBARK_CA")}
	if len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-h" && args[0] != "--help" && args[0] != "-help" {
		fs := flag.NewFlagSet("embark", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.StringVar(&rm.server, "server", rm.server, "HTTPS admin API URL, https://host:port")
		fs.StringVar(&rm.cert, "cert", rm.cert, "operator certificate (PEM)")
		fs.StringVar(&rm.key, "key", rm.key, "operator key (PEM)")
		fs.StringVar(&rm.ca, "ca", rm.ca, "roots that authenticate the server (PEM)")
		if err := fs.Parse(args); err != nil {
			return ctx, nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		args = fs.Args()
	}
	return context.WithValue(ctx, remoteKey{}, rm), args, nil
}

// dialRemote returns a client of the HTTPS admin API described by rm.
func dialRemote(rm remote) (*admin.Client, error) {
	if rm.cert == "" || rm.key == "" || rm.ca == "" {
		return nil, errors.New("--server needs --cert, --key and --ca (or EMBARK_CERT, EMBARK_KEY, EMBARK_CA): run `embark operator add` on the server host")
	}
	if fi, err := os.Stat(rm.key); err != nil {
		return nil, fmt.Errorf("operator key: %w", err)
	} else if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("operator key %s has mode %04o: others may read it (chmod 600 %s)", rm.key, perm, rm.key)
	}
	cert, err := tls.LoadX509KeyPair(rm.cert, rm.key)
	if err != nil {
		return nil, fmt.Errorf("operator certificate: %w", err)
	}
	pemRoots, err := os.ReadFile(rm.ca)
	if err != nil {
		return nil, fmt.Errorf("server CA: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemRoots) {
		return nil, fmt.Errorf("server CA %s: no PEM certificate", rm.ca)
	}
	return admin.DialHTTPS(rm.server, cert, roots)
}

// connect returns an admin client: over HTTPS when a server URL was given
// (--server or EMBARK_SERVER), else over the socket of a running server, or
// in process over the data directory when no server runs.
func connect(ctx context.Context, dataDir string) (*admin.Client, func(), error) {
	rm, ok := ctx.Value(remoteKey{}).(remote)
	if !ok {
		rm = remote{server: os.Getenv("EMBARK_SERVER"), cert: os.Getenv("EMBARK_CERT"), key: os.Getenv("EMBARK_KEY"), ca: os.Getenv("EMBARK_CA")}
	}
	if rm.server != "" {
		cl, err := dialRemote(rm)
		if err != nil {
			return nil, nil, err
		}
		return cl, func() {}, nil
	}
	cfg, err := config.Load(dataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("%v (run `embark init --data %s` first?)", err, dataDir)
	}
	sock := cfg.SocketPath()
	if c, err := net.DialTimeout("unix", sock, time.Second); err == nil {
		c.Close()
		cl := admin.DialSocket(sock)
		cl.Actor = actorName()
		return cl, func() {}, nil
	}
	srv, err := server.OpenOffline(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	cl := admin.InProcess(srv.AdminHandler())
	cl.Actor = actorName()
	return cl, func() { srv.Close() }, nil
}

func actorName() string {
	if u := os.Getenv("USER"); u != "" && !strings.ContainsAny(u, "\r\n") {
		return u
	}
	return ""
}
