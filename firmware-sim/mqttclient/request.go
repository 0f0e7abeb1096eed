package mqttclient

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"

	"github.com/eclipse/paho.golang/paho"

	"github.com/embark-iot/embark/pkg/mqttwire"
)

// correlationSize is the size of the correlation data of a request.
const correlationSize = 16

// nonceResends bounds how often one request is resent with a fresh nonce
// after a refusal because of its nonce.
const nonceResends = 2

// Nonce asks Embark for a nonce.
func (c *Conn) Nonce(ctx context.Context) ([]byte, error) {
	r, err := c.request(ctx, mqttwire.OpNonce, nil, nil)
	if err != nil {
		return nil, err
	}
	if r.Status != mqttwire.StatusOK {
		return nil, statusError(r)
	}
	if len(r.Nonce) == 0 || len(r.Nonce) > 2*mqttwire.NonceSize {
		return nil, fmt.Errorf("%w: nonce of %d bytes", ErrResponse, len(r.Nonce))
	}
	return r.Nonce, nil
}

// Enroll asks for an LDevID for the key of csrDER (a DER PKCS#10 request),
// signing the request with the connection's key (the IDevID's). claims, if
// not nil, must agree with the firmware attributes of the CSR. A refusal or
// "retry" answer is a [*StatusError]; resending after a retry answer (or a
// lost answer) with the same CSR gets the certificate already issued.
func (c *Conn) Enroll(ctx context.Context, csrDER []byte, claims *mqttwire.Claims) (*Issued, error) {
	return c.issue(ctx, mqttwire.OpEnroll, csrDER, claims)
}

// Renew asks for a new LDevID for the key of csrDER, signing the request
// with the connection's key (the current LDevID's).
func (c *Conn) Renew(ctx context.Context, csrDER []byte, claims *mqttwire.Claims) (*Issued, error) {
	return c.issue(ctx, mqttwire.OpRenew, csrDER, claims)
}

// ReportState tells Embark the command generation the device applied,
// signed with the connection's key (the current LDevID's).
func (c *Conn) ReportState(ctx context.Context, generation uint64) error {
	_, err := c.signed(ctx, mqttwire.Request{Op: mqttwire.OpState, Device: c.id, Applied: generation})
	return err
}

func (c *Conn) issue(ctx context.Context, op mqttwire.Op, csrDER []byte, claims *mqttwire.Claims) (*Issued, error) {
	if len(csrDER) == 0 || len(csrDER) > mqttwire.MaxCSR {
		return nil, fmt.Errorf("%w: CSR of %d bytes, want 1..%d", ErrConfig, len(csrDER), mqttwire.MaxCSR)
	}
	r, err := c.signed(ctx, mqttwire.Request{Op: op, Device: c.id, CSR: csrDER, Claims: claims})
	if err != nil {
		return nil, err
	}
	return parseIssued(r)
}

// signed sends req with a fresh nonce, signed, and returns the success
// answer. A refusal because of the nonce is resent with a fresh one.
func (c *Conn) signed(ctx context.Context, req mqttwire.Request) (mqttwire.Response, error) {
	for n := 0; ; n++ {
		nonce, err := c.Nonce(ctx)
		if err != nil {
			return mqttwire.Response{}, err
		}
		req.Nonce = nonce
		payload, err := c.signer.SignRequest(req)
		if err != nil {
			return mqttwire.Response{}, fmt.Errorf("mqttclient: %s: %w", req.Op, err)
		}
		r, err := c.request(ctx, req.Op, payload, nonce)
		if err != nil {
			return mqttwire.Response{}, err
		}
		switch r.Status {
		case mqttwire.StatusOK:
			return r, nil
		case mqttwire.StatusRefused:
			if nonceReasons[r.Reason] && n < nonceResends {
				c.log.Debug("mqttclient: resending with a fresh nonce", "op", req.Op, "reason", r.Reason)
				continue
			}
		}
		return mqttwire.Response{}, statusError(r)
	}
}

// request publishes payload to the op's request topic with the response
// topic and fresh correlation data, and waits for the verified answer. An
// answer must be for op, and echo nonce when it is not nil.
func (c *Conn) request(ctx context.Context, op mqttwire.Op, payload, nonce []byte) (mqttwire.Response, error) {
	if !c.subscribe {
		return mqttwire.Response{}, fmt.Errorf("%w: a publish-only connection gets no answers", ErrConfig)
	}
	corr := make([]byte, correlationSize)
	if _, err := rand.Read(corr); err != nil {
		return mqttwire.Response{}, fmt.Errorf("mqttclient: correlation data: %w", err)
	}
	ch := make(chan mqttwire.Response, 1)
	c.mu.Lock()
	c.pending[string(corr)] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, string(corr))
		c.mu.Unlock()
	}()

	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.publish(ctx, &paho.Publish{
		QoS:     1,
		Topic:   mqttwire.RequestTopic(c.id, op),
		Payload: payload,
		Properties: &paho.PublishProperties{
			ResponseTopic:   c.respTopic,
			CorrelationData: corr,
		},
	}); err != nil {
		return mqttwire.Response{}, fmt.Errorf("mqttclient: %s: %w", op, err)
	}
	var r mqttwire.Response
	select {
	case r = <-ch:
	case <-ctx.Done():
		return mqttwire.Response{}, fmt.Errorf("mqttclient: %s: no answer: %w", op, ctx.Err())
	case <-c.client.Done():
		return mqttwire.Response{}, fmt.Errorf("mqttclient: %s: %w", op, c.doneErr())
	}
	switch {
	case r.Op != op:
		return mqttwire.Response{}, fmt.Errorf("%w: answer for %q to a %s request", ErrResponse, r.Op, op)
	case nonce != nil && !bytes.Equal(r.Nonce, nonce):
		return mqttwire.Response{}, fmt.Errorf("%w: %s answer without the request's nonce", ErrResponse, op)
	}
	return r, nil
}

// PublishQoS1 publishes payload to topic with QoS 1, without properties,
// and waits for the PUBACK.
func (c *Conn) PublishQoS1(ctx context.Context, topic string, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: payload}); err != nil {
		return fmt.Errorf("mqttclient: publish: %w", err)
	}
	return nil
}

func (c *Conn) publish(ctx context.Context, p *paho.Publish) error {
	select {
	case <-c.client.Done():
		return c.doneErr()
	default:
	}
	resp, err := c.client.Publish(ctx, p)
	switch {
	case err == nil:
		return nil
	case resp != nil && resp.ReasonCode >= 0x80:
		reason := ""
		if resp.Properties != nil {
			reason = resp.Properties.ReasonString
		}
		return fmt.Errorf("%w: reason 0x%02x %s", ErrPublishRefused, resp.ReasonCode, reason)
	case ctx.Err() != nil:
		return fmt.Errorf("no PUBACK: %w", ctx.Err())
	}
	select {
	case <-c.client.Done():
		return fmt.Errorf("%w (%v)", c.doneErr(), err)
	default:
		return err
	}
}

// doneErr says why the connection ended.
func (c *Conn) doneErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}
