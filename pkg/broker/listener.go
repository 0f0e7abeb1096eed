package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// conn is a client connection as mochi sees it: the TLS connection plus the
// session the hook attached to it, so that the listener can drop the session
// whatever way mochi leaves the connection.
type conn struct {
	*tls.Conn
	sess atomic.Pointer[session]
}

// tlsListener serves mochi over a caller-supplied net.Listener. It does the
// TLS handshake itself, under a deadline, before mochi sees the connection:
// mochi reads the CONNECT packet without a deadline, so a client that opened
// a socket and sent nothing would otherwise hold a goroutine forever. The
// deadline also covers reading CONNECT; mochi replaces it with the keepalive
// deadline once the client is accepted.
type tlsListener struct {
	id      string
	ln      net.Listener
	tls     *tls.Config
	timeout time.Duration // handshake + CONNECT
	log     *slog.Logger
	release func(*conn) // called once mochi is done with a connection

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closed  bool
	started bool           // Serve has been launched
	wg      sync.WaitGroup // connection goroutines
	served  chan struct{}  // closed when Serve returns
}

var _ listeners.Listener = (*tlsListener)(nil)

func newTLSListener(id string, ln net.Listener, cfg *tls.Config, timeout time.Duration, log *slog.Logger, release func(*conn)) *tlsListener {
	return &tlsListener{
		id: id, ln: ln, tls: cfg, timeout: timeout, log: log, release: release,
		conns:  make(map[*conn]struct{}),
		served: make(chan struct{}),
	}
}

func (l *tlsListener) ID() string                { return l.id }
func (l *tlsListener) Address() string           { return l.ln.Addr().String() }
func (l *tlsListener) Protocol() string          { return "tls" }
func (l *tlsListener) Init(_ *slog.Logger) error { return nil }

// Serve accepts connections until the listener is closed. Unlike mochi's own
// listeners it survives temporary accept errors (EMFILE and the like) with a
// short backoff instead of stopping for good.
func (l *tlsListener) Serve(establish listeners.EstablishFn) {
	defer close(l.served)
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("mqtt accept failed", "listener", l.id, "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		cn := &conn{Conn: tls.Server(c, l.tls)}
		if !l.track(cn) {
			_ = c.Close()
			return
		}
		go l.handle(cn, establish)
	}
}

func (l *tlsListener) handle(c *conn, establish listeners.EstablishFn) {
	defer l.wg.Done()
	defer l.untrack(c)
	remote := c.RemoteAddr().String()
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
	var err error
	onFreshStack(func() { err = c.HandshakeContext(ctx) })
	cancel()
	if err != nil {
		_ = c.Close()
		l.log.Info("mqtt connection refused", "reason", "tls handshake failed", "error", err, "remote", remote)
		return
	}
	err = establish(l.id, c)
	l.release(c)
	_ = c.Close()
	var refused *refusedError
	switch {
	case err == nil, errors.As(err, &refused):
		// normal end, or refused and logged by the hook
	case c.sess.Load() == nil:
		// Mochi refused the client before the hook saw it: MQTT 3.x, a
		// malformed or oversized CONNECT, or no CONNECT at all.
		l.log.Info("mqtt connection refused", "reason", err.Error(), "remote", remote)
	default:
		l.log.Debug("mqtt connection ended", "error", err, "remote", remote)
	}
}

func (l *tlsListener) track(c *conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *tlsListener) untrack(c *conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
}

// markStarted records that Serve has been (or is about to be) launched, so
// that Close waits for it to return.
func (l *tlsListener) markStarted() {
	l.mu.Lock()
	l.started = true
	l.mu.Unlock()
}

func (l *tlsListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting, closes every connection and waits for the
// connection goroutines to end.
func (l *tlsListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	started := l.started
	conns := make([]*conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.mu.Unlock()

	_ = l.ln.Close()
	closeAll := func() {
		for _, c := range conns {
			_ = c.NetConn().Close()
		}
	}
	// Mochi's own way to close a listener's clients (closeClients) reads
	// its client map under a read lock taken twice, which deadlocks when a
	// client detaches at the same moment (mochi 2.7.9). Closing the sockets
	// ends every client instead: each one's read fails and mochi detaches
	// it. Devices see the connection close rather than a DISCONNECT.
	_ = closeClients
	closeAll()
	if started {
		<-l.served
	}
	l.wg.Wait()
}

// onFreshStack runs f on a goroutine of its own and waits for it. The
// goroutine that serves a client for hours then never grows the stack a
// TLS handshake or a certificate check needs (Go does not give stack
// memory back until a collection finds it mostly unused): with 10,000
// idle devices this is several KiB each.
func onFreshStack(f func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	<-done
}
