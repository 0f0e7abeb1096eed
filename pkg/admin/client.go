package admin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
)

// Client calls the admin API.
type Client struct {
	hc *http.Client
	// Actor is sent along so that the audit log names the operator.
	Actor string
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
