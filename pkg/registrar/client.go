package registrar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/voucher"
)

// maxAnswer bounds what is read of a MASA answer.
const maxAnswer = voucher.MaxEnvelope

// clients keeps one HTTP client per MASA URL and trust, so that
// connections (and their hybrid handshakes) are reused.
type clients struct {
	cert    tls.Certificate
	timeout time.Duration
	observe func(url string, cs tls.ConnectionState)

	mu sync.Mutex
	m  map[string]*http.Client
}

func (c *clients) get(u string, roots []*x509.Certificate, withCert bool) (*http.Client, error) {
	parsed, err := checkURL(u)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write([]byte(u))
	for _, r := range roots {
		h.Write(r.Raw)
	}
	if withCert {
		h.Write([]byte{1})
	}
	key := hex.EncodeToString(h.Sum(nil))
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.m[key]; ok {
		return cl, nil
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	var cert *tls.Certificate
	if withCert {
		cert = &c.cert
	}
	cfg := voucher.ClientTLSConfig(cert, pool, parsed.Hostname())
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := voucher.CheckHybrid(cs); err != nil {
			return err
		}
		if c.observe != nil {
			c.observe(u, cs)
		}
		return nil
	}
	tr := &http.Transport{
		TLSClientConfig:     cfg,
		DialContext:         (&net.Dialer{Timeout: c.timeout}).DialContext,
		TLSHandshakeTimeout: c.timeout,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	}
	cl := &http.Client{Transport: tr, Timeout: c.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	if c.m == nil {
		c.m = map[string]*http.Client{}
	}
	if len(c.m) > 64 {
		for k, old := range c.m {
			old.CloseIdleConnections()
			delete(c.m, k)
		}
	}
	c.m[key] = cl
	return cl, nil
}

func (c *clients) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, cl := range c.m {
		cl.CloseIdleConnections()
		delete(c.m, k)
	}
}

// post sends body to the MASA and returns the answer's body and TLS state.
// An answer other than 200 with a JSON refusal is a *MASARefusal; a
// transport failure or a server error wraps ErrMASA.
func post(ctx context.Context, cl *http.Client, u, path, ctype string, body []byte) ([]byte, *tls.ConnectionState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMASA, err)
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := cl.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrMASA, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return nil, resp.TLS, fmt.Errorf("%w: read answer: %v", ErrMASA, err)
	}
	if len(b) > maxAnswer {
		return nil, resp.TLS, fmt.Errorf("%w: answer above %d bytes", ErrMASA, maxAnswer)
	}
	if resp.StatusCode == http.StatusOK {
		return b, resp.TLS, nil
	}
	var ref MASARefusal
	if resp.StatusCode >= 400 && resp.StatusCode < 500 && json.Unmarshal(b, &struct {
		Reason  *string `json:"reason"`
		Message *string `json:"message"`
	}{&ref.Reason, &ref.Message}) == nil && ref.Reason != "" {
		ref.Status = resp.StatusCode
		return nil, resp.TLS, &ref
	}
	return nil, resp.TLS, fmt.Errorf("%w: HTTP %d", ErrMASA, resp.StatusCode)
}

// isRefusal reports whether err is the MASA's refusal (as opposed to the
// MASA being unreachable).
func isRefusal(err error) (*MASARefusal, bool) {
	var ref *MASARefusal
	ok := errors.As(err, &ref)
	return ref, ok
}
