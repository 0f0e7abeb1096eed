package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
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

// connect returns an admin client: over the socket of a running server, or
// in process over the data directory when no server runs.
func connect(ctx context.Context, dataDir string) (*admin.Client, func(), error) {
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
