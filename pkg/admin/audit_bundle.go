package admin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/audit/auditlog"
)

// ExportErrorTrailer is the HTTP trailer that reports an export that failed
// after the bundle started to stream (the bundle is then incomplete).
const ExportErrorTrailer = "X-Embark-Export-Error"

// registerAudit adds the audit log endpoints beyond GET /v1/audit:
//
//	GET /v1/audit/bundle   the whole log as an audit bundle (application/cbor-seq, streamed)
func (h *handler) registerAudit(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/audit/bundle", h.auditBundle)
}

// countingWriter counts what passed through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (h *handler) auditBundle(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", audit.BundleMediaType)
	w.Header().Set("Trailer", ExportErrorTrailer)
	cw := &countingWriter{w: w}
	info, err := auditlog.Export(r.Context(), h.b.Store, cw, h.b.Clock())
	if err != nil && cw.n == 0 {
		w.Header().Del("Trailer")
		h.fail(w, err)
		return
	}
	if err != nil {
		// The status is sent: say so in the trailer. The bundle ends
		// early, which its verifier finds on its own as well.
		w.Header().Set(ExportErrorTrailer, err.Error())
		h.b.Logger.Error("audit export", slog.Any("err", err), slog.Int64("bytes", cw.n))
		return
	}
	h.b.Logger.Info("audit exported", slog.Uint64("entries", info.Entries), slog.Int("checkpoints", info.Checkpoints),
		slog.String("by", actor(r)))
}

// AuditBundle streams the audit bundle of GET /v1/audit/bundle into w. An
// export that fails midway returns an error after part of the bundle was
// written.
func (c *Client) AuditBundle(ctx context.Context, w io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://embark/v1/audit/bundle", nil)
	if err != nil {
		return err
	}
	if c.Actor != "" {
		req.Header.Set("X-Embark-Actor", c.Actor)
	}
	if t, ok := c.hc.Transport.(inProcess); ok {
		return streamInProcess(t.h, req, w)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeAnswer(resp, nil)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("audit bundle: %w", err)
	}
	if msg := resp.Trailer.Get(ExportErrorTrailer); msg != "" {
		return fmt.Errorf("audit bundle: the server's export failed: %s", msg)
	}
	return nil
}

// streamInProcess serves req with h, writing a 200 answer's body straight
// to w instead of buffering it as the in-process transport does.
func streamInProcess(h http.Handler, req *http.Request, w io.Writer) error {
	sw := &streamWriter{header: http.Header{}, w: w}
	h.ServeHTTP(sw, req)
	if sw.status == 0 {
		sw.status = http.StatusOK
	}
	if sw.status != http.StatusOK {
		resp := &http.Response{StatusCode: sw.status, Header: sw.header, Body: io.NopCloser(&sw.errBody)}
		return decodeAnswer(resp, nil)
	}
	if sw.err != nil {
		return fmt.Errorf("audit bundle: %w", sw.err)
	}
	if msg := sw.header.Get(ExportErrorTrailer); msg != "" {
		return fmt.Errorf("audit bundle: the export failed: %s", msg)
	}
	return nil
}

type streamWriter struct {
	header  http.Header
	status  int
	w       io.Writer
	err     error
	errBody bytes.Buffer
}

func (s *streamWriter) Header() http.Header { return s.header }

func (s *streamWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}

func (s *streamWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	if s.status != http.StatusOK {
		return s.errBody.Write(p)
	}
	n, err := s.w.Write(p)
	if err != nil && s.err == nil {
		s.err = err
	}
	return n, err
}
