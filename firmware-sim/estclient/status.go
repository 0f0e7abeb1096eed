package estclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// StatusPath is Embark's status resource: the device's desired state,
// observable (RFC 7641).
const StatusPath = "/embark/status"

// FormatCBOR is application/cbor, the content format of the status
// resource's documents and reports.
const FormatCBOR message.MediaType = 60

// firstAnswerWait bounds the wait for the answer to a registration to be
// handled after the transport delivered it.
const firstAnswerWait = 5 * time.Second

// Status is a device's desired state as Embark serves it at /embark/status
// (CBOR, text keys): generation grows with every change; rotate asks for a
// renewal with a new key; zone is where policy put the device; revoked
// says its credentials are revoked; applied is the newest generation
// Embark recorded as applied; renew_from and not_after (Unix seconds) are
// the renewal window of the certificate the session uses.
type Status struct {
	Generation uint64 `cbor:"generation"`
	Rotate     bool   `cbor:"rotate,omitempty"`
	Campaign   string `cbor:"campaign,omitempty"`
	Zone       string `cbor:"zone,omitempty"`
	Revoked    bool   `cbor:"revoked,omitempty"`
	Reason     string `cbor:"reason,omitempty"`
	Applied    uint64 `cbor:"applied"`
	RenewFrom  int64  `cbor:"renew_from,omitempty"`
	NotAfter   int64  `cbor:"not_after,omitempty"`
}

// statusDecoder refuses duplicate keys and indefinite lengths; keys it
// does not know are skipped, so that the server may add some.
var statusDecoder, _ = cbor.DecOptions{
	DupMapKey:   cbor.DupMapKeyEnforcedAPF,
	IndefLength: cbor.IndefLengthForbidden,
	MaxMapPairs: 64,
}.DecMode()

// ParseStatus decodes a status document.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	if err := statusDecoder.Unmarshal(b, &s); err != nil {
		return Status{}, fmt.Errorf("%w: status: %v", ErrResponse, err)
	}
	return s, nil
}

// Status fetches the device's desired state once (GET without Observe).
// The session must be authenticated with the device's LDevID.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	a, err := c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Get(ctx, StatusPath, acceptOptions(FormatCBOR)...)
	}, codes.Content)
	if err != nil {
		return nil, fmt.Errorf("estclient: status: %w", err)
	}
	return a.status()
}

// ReportApplied tells Embark the generation the device applied (POST
// {"applied": generation}) and returns the document as Embark now holds it.
// A generation Embark never issued is refused (4.00).
func (c *Client) ReportApplied(ctx context.Context, generation uint64) (*Status, error) {
	body, err := cbor.Marshal(map[string]uint64{"applied": generation})
	if err != nil {
		return nil, fmt.Errorf("estclient: report: %w", err)
	}
	a, err := c.do(ctx, func(ctx context.Context) (*pool.Message, error) {
		return c.conn.Post(ctx, StatusPath, FormatCBOR, bytes.NewReader(body), acceptOptions(FormatCBOR)...)
	}, codes.Changed)
	if err != nil {
		return nil, fmt.Errorf("estclient: report: %w", err)
	}
	return a.status()
}

func (a answer) status() (*Status, error) {
	if err := a.expect(FormatCBOR); err != nil {
		return nil, fmt.Errorf("estclient: status: %w", err)
	}
	s, err := ParseStatus(a.body)
	if err != nil {
		return nil, fmt.Errorf("estclient: %w", err)
	}
	return &s, nil
}

// StatusObservation is a registered observation of the status resource.
// Its methods may be called from any goroutine.
type StatusObservation struct {
	updates chan Status
	done    chan struct{}
	conn    mux.Conn

	mu      sync.Mutex
	obs     mux.Observation
	started bool
	// first is what the answer to the registration was: its failure, and
	// whether it carried the Observe option.
	firstErr error
	observed bool
	have     bool
	last     uint64
	err      error
}

// ObserveStatus registers an observation of the device's status (GET with
// Observe=0) and returns it once the server answered; the current document
// is its first update. A refusal is a *StatusError; a server that answers
// without registering (its bound of observers is reached) gives
// ErrNotObserved, and the device may poll with [Client.Status] instead.
//
// With keepAlive > 0 the session is pinged (a CoAP ping, an empty
// confirmable message) that often, so that the server does not close it as
// idle and a dead server is noticed: the observation then ends with
// ErrSessionLost. The session must be authenticated with the LDevID.
func (c *Client) ObserveStatus(ctx context.Context, keepAlive time.Duration) (*StatusObservation, error) {
	const op = "estclient: observe status"
	mc, ok := c.conn.(mux.Conn)
	if !ok {
		return nil, fmt.Errorf("%s: %w: transport cannot observe", op, ErrConfig)
	}
	o := &StatusObservation{updates: make(chan Status, 1), done: make(chan struct{}), conn: mc}
	answered := make(chan struct{})
	rctx := ctx
	if c.timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	obs, err := mc.Observe(rctx, StatusPath, func(m *pool.Message) { o.handle(m, answered) }, acceptOptions(FormatCBOR)...)
	// The answer is handled on the transport's goroutine, possibly after
	// Observe returned: wait for it, unless nothing is coming.
	select {
	case <-answered:
	case <-rctx.Done():
	case <-mc.Done():
	case <-time.After(firstAnswerWait):
	}
	o.mu.Lock()
	started, firstErr, observed := o.started, o.firstErr, o.observed
	o.obs = obs
	o.mu.Unlock()
	switch {
	case started && firstErr != nil:
		if err == nil {
			_ = obs.Cancel(rctx)
		}
		return nil, fmt.Errorf("%s: %w", op, firstErr)
	case err != nil:
		if cerr := rctx.Err(); cerr != nil {
			return nil, fmt.Errorf("%s: %w", op, cerr)
		}
		return nil, fmt.Errorf("%s: %w", op, err)
	case !started:
		_ = obs.Cancel(rctx)
		return nil, fmt.Errorf("%s: %w: no answer", op, ErrResponse)
	case !observed:
		return nil, fmt.Errorf("%s: %w", op, ErrNotObserved)
	}
	go o.watch(keepAlive, c.timeout)
	return o, nil
}

// handle takes the answer to the registration and every notification.
func (o *StatusObservation) handle(m *pool.Message, answered chan struct{}) {
	st, err := readStatusMessage(m)
	_, obsErr := m.Observe()
	o.mu.Lock()
	if !o.started {
		o.started, o.firstErr, o.observed = true, err, obsErr == nil
		if err == nil && obsErr == nil {
			o.deliverLocked(st)
		}
		o.mu.Unlock()
		close(answered)
		return
	}
	o.mu.Unlock()
	switch {
	case err != nil:
		// A final notification (RFC 7641 §3.2): an error ends the
		// observation, such as 4.03 "revoked" before the session drops.
		o.end(err)
	case obsErr != nil:
		// A 2.05 without Observe: the server dropped the registration.
		o.end(ErrNotObserved)
	default:
		o.mu.Lock()
		o.deliverLocked(st)
		o.mu.Unlock()
	}
}

// readStatusMessage decodes a notification: a document, or the
// *StatusError of an error code.
func readStatusMessage(m *pool.Message) (Status, error) {
	body, err := readBody(m)
	if err != nil {
		return Status{}, err
	}
	if code := m.Code(); code >= codes.BadRequest {
		se := &StatusError{Code: code}
		se.Reason, se.Message = parseDiagnostic(body)
		if ma, err := m.GetOptionUint32(message.MaxAge); err == nil {
			se.MaxAge = time.Duration(ma) * time.Second
		} else if se.Retryable() {
			se.MaxAge = DefaultMaxAge
		}
		return Status{}, se
	} else if code != codes.Content {
		return Status{}, fmt.Errorf("%w: code %s %s, want 2.05 Content", ErrResponse, CodeString(code), code)
	}
	if cf, err := m.ContentFormat(); err == nil && cf != FormatCBOR {
		return Status{}, fmt.Errorf("%w: content format %d, want %d", ErrResponse, cf, FormatCBOR)
	}
	return ParseStatus(body)
}

// deliverLocked offers st on the updates channel, replacing an update not
// taken yet: only the newest state matters. A document older than one
// delivered is dropped. Called with mu held.
func (o *StatusObservation) deliverLocked(st Status) {
	if o.err != nil || (o.have && st.Generation < o.last) {
		return
	}
	o.have, o.last = true, st.Generation
	select {
	case <-o.updates:
	default:
	}
	o.updates <- st
}

// end ends the observation with err; false if it had ended already.
func (o *StatusObservation) end(err error) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return false
	}
	o.err = err
	close(o.done)
	return true
}

// watch ends the observation when the session ends, and pings.
func (o *StatusObservation) watch(keepAlive, timeout time.Duration) {
	var tick <-chan time.Time
	if keepAlive > 0 {
		t := time.NewTicker(keepAlive)
		defer t.Stop()
		tick = t.C
	}
	if timeout <= 0 {
		timeout = max(keepAlive, time.Second)
	}
	for {
		select {
		case <-o.done:
			return
		case <-o.conn.Done():
			o.end(ErrSessionLost)
			return
		case <-tick:
			ctx, cancel := context.WithTimeout(o.conn.Context(), timeout)
			err := o.conn.Ping(ctx)
			cancel()
			if err != nil {
				o.end(fmt.Errorf("%w: keepalive: %v", ErrSessionLost, err))
				return
			}
		}
	}
}

// Updates delivers the documents: the current one first, then each
// notification of a newer generation. An update not taken before the next
// arrives is replaced by it.
func (o *StatusObservation) Updates() <-chan Status { return o.updates }

// Done is closed when the observation ended; Err says why.
func (o *StatusObservation) Done() <-chan struct{} { return o.done }

// Err is nil while the observation lives, then why it ended: a
// *StatusError (the server's final notification, such as 4.03 "revoked"),
// ErrSessionLost, ErrNotObserved, ErrResponse or ErrObservationCanceled.
func (o *StatusObservation) Err() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.err
}

// Cancel deregisters (GET with Observe=1) and ends the observation.
func (o *StatusObservation) Cancel(ctx context.Context) error {
	if !o.end(ErrObservationCanceled) {
		return nil
	}
	o.mu.Lock()
	obs := o.obs
	o.mu.Unlock()
	if err := obs.Cancel(ctx); err != nil {
		return fmt.Errorf("estclient: cancel observation: %w", err)
	}
	return nil
}

// IsRevoked reports whether err is the server saying the device's
// credential is revoked (4.03 "revoked").
func IsRevoked(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Code == codes.Forbidden && se.Reason == "revoked"
}
