package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// Upload POSTs body to path and decodes a JSON answer into out (if not
// nil), as [Client.Do] does, without holding the body in memory: a
// manifest file goes to the server as it is read. size is the body's length,
// or -1 if unknown.
func (c *Client) Upload(ctx context.Context, path string, body io.Reader, size int64, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://embark"+path, body)
	if err != nil {
		return err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
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

// decodeAnswer reads an answer of the admin API into out, or its error.
func decodeAnswer(resp *http.Response, out any) error {
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var e Error
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &APIError{Status: resp.StatusCode, Msg: e.Error}
		}
		return &APIError{Status: resp.StatusCode, Msg: string(bytes.TrimSpace(data))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}

// Raw fetches a non-JSON answer (such as the DER CRL of GET /v1/crl).
func (c *Client) Raw(ctx context.Context, path string, out *[]byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://embark"+path, nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return decodeAnswer(resp, nil)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	*out = b
	return nil
}
