package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"time"
)

// Client calls the admin API.
type Client struct {
	hc *http.Client
	// Actor is sent along so that the audit log names the operator. Over
	// HTTPS the server ignores it: the certificate names the operator.
	Actor string
	// tls records the TLS state of the latest answer over HTTPS.
	tls *lastTLS
}

// DialHTTPS returns a client of the HTTPS admin API at base
// ("https://host:port"), authenticated by the operator certificate cert and
// verifying the server against roots. It speaks TLS 1.3 with the hybrid
// key exchange X25519MLKEM768 only ([ClientTLSConfig]).
func DialHTTPS(base string, cert tls.Certificate, roots *x509.CertPool) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("admin: server %q: want https://host:port", base)
	}
	if roots == nil {
		return nil, fmt.Errorf("admin: server %s: no roots to verify it with", base)
	}
	tr := &http.Transport{
		TLSClientConfig:     ClientTLSConfig(cert, roots),
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		Proxy:               http.ProxyFromEnvironment,
	}
	last := &lastTLS{}
	return &Client{hc: &http.Client{Transport: &rebase{scheme: u.Scheme, host: u.Host, rt: tr, last: last}}, tls: last}, nil
}

// LastTLS returns the TLS state of the latest answer over HTTPS (false for
// a client of the socket, or before any answer).
func (c *Client) LastTLS() (tls.ConnectionState, bool) {
	if c.tls == nil {
		return tls.ConnectionState{}, false
	}
	return c.tls.get()
}

type lastTLS struct {
	mu sync.Mutex
	cs *tls.ConnectionState
}

func (l *lastTLS) get() (tls.ConnectionState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cs == nil {
		return tls.ConnectionState{}, false
	}
	return *l.cs, true
}

// rebase sends the client's requests (written for http://embark/...) to
// the HTTPS server.
type rebase struct {
	scheme, host string
	rt           http.RoundTripper
	last         *lastTLS
}

func (t *rebase) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host, r2.Host = t.scheme, t.host, t.host
	resp, err := t.rt.RoundTrip(r2)
	if err == nil && resp.TLS != nil {
		t.last.mu.Lock()
		t.last.cs = resp.TLS
		t.last.mu.Unlock()
	}
	return resp, err
}

// DialSocket returns a client of the server listening on a unix socket.
func DialSocket(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{hc: &http.Client{Transport: tr}}
}

// InProcess returns a client that calls h directly, for a CLI that opened
// the data directory itself because no server runs.
func InProcess(h http.Handler) *Client {
	return &Client{hc: &http.Client{Transport: inProcess{h}}}
}

type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// APIError is an error answer of the admin API.
type APIError struct {
	Status int
	Msg    string
}

func (e *APIError) Error() string { return fmt.Sprintf("%s (HTTP %d)", e.Msg, e.Status) }

// Do sends a request and decodes a JSON answer into out (if not nil).
func (c *Client) Do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://embark"+path, rd)
	if err != nil {
		return err
	}
	if c.Actor != "" {
		req.Header.Set("X-Embark-Actor", c.Actor)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeAnswer(resp, out)
}
