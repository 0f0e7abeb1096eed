package estcoap

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/onboard"
)

// StatusPath is the observable status resource: a device's desired state.
const StatusPath = "/embark/status"

// Bounds of the status resource. A device needs one observation; a few
// per connection leave room for an application restarted on the same
// session. A registration beyond either bound is answered like a plain GET,
// without the Observe option, which tells the client it is not registered
// (RFC 7641 §4.1); it may poll instead.
const (
	// MaxObserversPerConn bounds the observations of one DTLS/TLS session.
	MaxObserversPerConn = 4
	// MaxObservers bounds the observations of the whole server.
	MaxObservers = 100_000
	// MaxStatusReport is the largest report a device may POST (bytes).
	MaxStatusReport = 256
)

// notifyWorkers bounds the notifications in flight at once: over DTLS each
// waits for the device's acknowledgement (or its retransmissions to run
// out).
const notifyWorkers = 32

// Identifier names the device a client certificate chain belongs to. The
// onboarding core (onboard.Service) is one; the status resource needs it.
type Identifier interface {
	Identify(ctx context.Context, chain []*x509.Certificate) (onboard.Identity, error)
}

// StatusDocument is what GET /embark/status answers and every notification
// carries: CBOR (content format 60), a map with text keys. The fields
// generation to reason are the device's desired state (package desired),
// the same as the MQTT command; applied is the newest generation Embark
// recorded as applied; renew_from and not_after (Unix seconds) are the
// renewal window of the certificate the session is authenticated with.
type StatusDocument struct {
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

// StatusReport is what a device POSTs to /embark/status (CBOR, content
// format 60): the generation it applied. Other keys are refused.
type StatusReport struct {
	Applied *uint64 `cbor:"applied"`
}

// statusDoc is the document of d for a session authenticated with leaf.
func statusDoc(d desired.Desired, leaf *x509.Certificate) StatusDocument {
	doc := StatusDocument{Generation: d.Generation, Rotate: d.Rotate, Campaign: d.Campaign, Zone: d.Zone,
		Revoked: d.Revoked, Reason: d.Reason, Applied: d.Applied}
	if leaf != nil {
		doc.RenewFrom, doc.NotAfter = onboard.RenewFrom(leaf).Unix(), leaf.NotAfter.Unix()
	}
	return doc
}

// reportDecoder reads reports strictly: one definite-length map, no
// duplicate or unknown keys, nothing after it.
var reportDecoder, _ = cbor.DecOptions{
	DupMapKey:         cbor.DupMapKeyEnforcedAPF,
	IndefLength:       cbor.IndefLengthForbidden,
	ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
	FieldNameMatching: cbor.FieldNameMatchingCaseSensitive,
	MaxNestedLevels:   4,
	MaxMapPairs:       16,
	MaxArrayElements:  16,
}.DecMode()

// observerKey names an observation: the session and the token (RFC 7641
// §4.1: one entry per endpoint and token).
type observerKey struct {
	conn  mux.Conn
	token string
}

// observer is one registered observation of a device's status.
type observer struct {
	key    observerKey
	device string
	// chain authenticated the session, leaf first: the renewal window
	// comes from its leaf, the final notification from its status.
	chain []*x509.Certificate
	gone  atomic.Bool

	mu sync.Mutex
	// sent is the newest generation sent (answer or notification); next
	// the newest not sent yet, nil if none; busy says the observer is
	// queued or being flushed.
	sent uint64
	next *desired.Desired
	busy bool
}

// observers is the registry of the status resource's observations and the
// queue of notifications to send.
type observers struct {
	maxPerConn, maxTotal int
	seq                  atomic.Uint32

	mu       sync.Mutex
	byKey    map[observerKey]*observer
	byDevice map[string]map[*observer]struct{}
	// perConn holds the observers of each session; a session has an entry
	// (possibly empty) from its first registration until it closes, so
	// that its close is hooked once.
	perConn map[mux.Conn]map[*observer]struct{}
	queue   []*observer
	workers int
}

func (ob *observers) init() {
	ob.maxPerConn, ob.maxTotal = MaxObserversPerConn, MaxObservers
	ob.byKey = map[observerKey]*observer{}
	ob.byDevice = map[string]map[*observer]struct{}{}
	ob.perConn = map[mux.Conn]map[*observer]struct{}{}
}

// nextSeq is the next Observe sequence number: one counter for the server,
// so that numbers grow for every observer, in 24 bits (RFC 7641 §4.4).
func (ob *observers) nextSeq() uint32 { return ob.seq.Add(1) & 0xFFFFFF }

// add registers an observation, or returns the one with the same key (a
// re-registration replaces nothing: RFC 7641 §4.1). It returns nil when a
// bound is reached.
func (ob *observers) add(key observerKey, device string, chain []*x509.Certificate, onClose func()) *observer {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	if o, ok := ob.byKey[key]; ok {
		return o
	}
	set, hooked := ob.perConn[key.conn]
	if len(ob.byKey) >= ob.maxTotal || len(set) >= ob.maxPerConn {
		return nil
	}
	o := &observer{key: key, device: device, chain: chain}
	if !hooked {
		set = map[*observer]struct{}{}
		ob.perConn[key.conn] = set
		key.conn.AddOnClose(onClose)
	}
	set[o] = struct{}{}
	ob.byKey[key] = o
	devs := ob.byDevice[device]
	if devs == nil {
		devs = map[*observer]struct{}{}
		ob.byDevice[device] = devs
	}
	devs[o] = struct{}{}
	return o
}

// removeLocked forgets o. Called with mu held.
func (ob *observers) removeLocked(o *observer) {
	if !o.gone.CompareAndSwap(false, true) {
		return
	}
	delete(ob.byKey, o.key)
	if set := ob.perConn[o.key.conn]; set != nil {
		delete(set, o)
	}
	if devs := ob.byDevice[o.device]; devs != nil {
		delete(devs, o)
		if len(devs) == 0 {
			delete(ob.byDevice, o.device)
		}
	}
}

func (ob *observers) remove(o *observer) {
	ob.mu.Lock()
	ob.removeLocked(o)
	ob.mu.Unlock()
}

// removeKey forgets the observation with key, if any.
func (ob *observers) removeKey(key observerKey) {
	ob.mu.Lock()
	if o, ok := ob.byKey[key]; ok {
		ob.removeLocked(o)
	}
	ob.mu.Unlock()
}

// dropConn forgets every observation of a session and returns them.
func (ob *observers) dropConn(c mux.Conn) []*observer {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	var out []*observer
	for o := range ob.perConn[c] {
		out = append(out, o)
		ob.removeLocked(o)
	}
	delete(ob.perConn, c)
	return out
}

// of returns the observers of a device.
func (ob *observers) of(device string) []*observer {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	out := make([]*observer, 0, len(ob.byDevice[device]))
	for o := range ob.byDevice[device] {
		out = append(out, o)
	}
	return out
}

// count returns the number of observations.
func (ob *observers) count() int {
	ob.mu.Lock()
	defer ob.mu.Unlock()
	return len(ob.byKey)
}

// Observers returns the number of live observations of the status resource.
func (s *Server) Observers() int { return s.status.count() }

// serveStatus registers the status resource when the configuration has
// desired state, and follows its changes.
func (s *Server) serveStatus() error {
	if s.cfg.Desired == nil {
		return nil
	}
	id, ok := s.cfg.Core.(Identifier)
	if !ok {
		return errors.New("estcoap: the status resource needs a Core that identifies devices (Identifier)")
	}
	s.status.init()
	s.handle(StatusPath, s.statusResource(id))
	s.cfg.Desired.OnChange(s.statusChanged)
	return nil
}

// statusResource serves /embark/status: GET (with Observe=0 to register,
// Observe=1 to deregister) answers the document, POST takes a report.
func (s *Server) statusResource(id Identifier) mux.HandlerFunc {
	return func(w mux.ResponseWriter, r *mux.Message) {
		switch r.Code() {
		case codes.GET:
			s.statusGet(w, r, id)
		case codes.POST:
			s.statusPost(w, r, id)
		default:
			s.fail(w, codes.MethodNotAllowed, onboard.ReasonBadRequest, "status answers GET and POST", 0)
		}
	}
}

// statusPeer authenticates the session: a usable LDevID of an active
// device. It answers the refusal itself and returns ok false.
func (s *Server) statusPeer(ctx context.Context, w mux.ResponseWriter, id Identifier) (onboard.Identity, []*x509.Certificate, bool) {
	chain, _, err := s.peerChain(w.Conn().NetConn())
	if err != nil {
		s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot read the client certificate", 0)
		s.log.Error("peer certificate", slog.Any("err", err))
		return onboard.Identity{}, nil, false
	}
	if len(chain) == 0 {
		s.fail(w, codes.Unauthorized, onboard.ReasonUnauthenticated, "the status is served to a device authenticated with its LDevID", 0)
		return onboard.Identity{}, nil, false
	}
	ident, err := id.Identify(ctx, chain)
	if err != nil {
		s.refuse(w, "status", w.Conn().RemoteAddr().String(), err)
		return onboard.Identity{}, nil, false
	}
	if ident.Credential != onboard.CredLDevID {
		s.fail(w, codes.Forbidden, onboard.ReasonWrongCredential, "the status is served to LDevIDs issued here, not to IDevIDs", 0)
		return onboard.Identity{}, nil, false
	}
	s.trackPeer(w.Conn(), chain)
	return ident, chain, true
}

func (s *Server) statusGet(w mux.ResponseWriter, r *mux.Message, id Identifier) {
	if f := accept(r, message.AppCBOR); f != message.AppCBOR {
		s.fail(w, codes.NotAcceptable, onboard.ReasonBadRequest, "status offers 60 (application/cbor)", 0)
		return
	}
	key := observerKey{conn: w.Conn(), token: string(r.Token())}
	v, err := r.Options().Observe()
	register := err == nil && v == 0 && len(r.Token()) > 0
	if !register {
		// Observe=1, or a GET without Observe on the token of an
		// observation: the client is no longer interested. An observation
		// is bound to its session: only the session can end it.
		s.status.removeKey(key)
	}
	// Not bound to the request: a client that deregisters as it leaves
	// does not turn the reads into errors.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.RequestTimeout)
	defer cancel()
	ident, chain, ok := s.statusPeer(ctx, w, id)
	if !ok {
		return
	}
	var o *observer
	if register {
		o = s.status.add(key, ident.DeviceID, chain, func() { s.status.dropConn(key.conn) })
		if o != nil && key.conn.Context().Err() != nil {
			// Closed while registering: its close hook may have run.
			s.status.dropConn(key.conn)
			o = nil
		}
	}
	if o == nil {
		d, err := s.cfg.Desired.Of(ctx, ident.DeviceID)
		if err != nil {
			s.statusError(w, err)
			return
		}
		s.replyStatus(w, codes.Content, statusDoc(d, chain[0]))
		return
	}
	// The document is read and numbered under the observer's lock, so that
	// a notification racing this answer carries a newer document and a
	// higher sequence number, never an older one.
	o.mu.Lock()
	d, err := s.cfg.Desired.Of(ctx, ident.DeviceID)
	if err != nil {
		o.mu.Unlock()
		s.status.remove(o)
		s.statusError(w, err)
		return
	}
	o.sent = max(o.sent, d.Generation)
	seq := s.status.nextSeq()
	o.mu.Unlock()
	s.replyStatus(w, codes.Content, statusDoc(d, chain[0]), uintOption(message.Observe, seq))
}

func (s *Server) statusPost(w mux.ResponseWriter, r *mux.Message, id Identifier) {
	if cf, err := r.ContentFormat(); err != nil || cf != message.AppCBOR {
		s.fail(w, codes.UnsupportedMediaType, onboard.ReasonBadRequest, "status takes a report as content format 60 (application/cbor)", 0)
		return
	}
	if f := accept(r, message.AppCBOR); f != message.AppCBOR {
		s.fail(w, codes.NotAcceptable, onboard.ReasonBadRequest, "status answers 60 (application/cbor)", 0)
		return
	}
	body, err := readBody(r, MaxStatusReport)
	if err != nil {
		s.reply(w, codes.RequestEntityTooLarge, message.TextPlain,
			fmt.Appendf(nil, "%s: a status report is at most %d bytes", onboard.ReasonPayloadTooLarge, MaxStatusReport),
			size1(MaxStatusReport))
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.cfg.RequestTimeout)
	defer cancel()
	ident, chain, ok := s.statusPeer(ctx, w, id)
	if !ok {
		return
	}
	var rep StatusReport
	if err := reportDecoder.Unmarshal(body, &rep); err != nil {
		s.fail(w, codes.BadRequest, onboard.ReasonBadRequest, "status report: "+err.Error(), 0)
		return
	}
	if rep.Applied == nil {
		s.fail(w, codes.BadRequest, onboard.ReasonBadRequest, "status report: no applied generation", 0)
		return
	}
	d, err := s.cfg.Desired.Applied(ctx, ident.DeviceID, *rep.Applied)
	if err != nil {
		s.statusError(w, err)
		return
	}
	s.replyStatus(w, codes.Changed, statusDoc(d, chain[0]))
}

// statusError answers a failure of the desired-state store.
func (s *Server) statusError(w mux.ResponseWriter, err error) {
	switch {
	case errors.Is(err, desired.ErrAhead):
		s.fail(w, codes.BadRequest, onboard.ReasonBadRequest, err.Error(), 0)
	case errors.Is(err, desired.ErrUnknownDevice):
		s.fail(w, codes.Forbidden, onboard.ReasonUnknownDevice, err.Error(), 0)
	default:
		s.log.Error("status", slog.Any("err", err))
		s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "desired state unavailable", 0)
	}
}

func (s *Server) replyStatus(w mux.ResponseWriter, code codes.Code, doc StatusDocument, opts ...message.Option) {
	b, err := cbor.Marshal(doc)
	if err != nil {
		s.fail(w, codes.InternalServerError, onboard.ReasonInternal, "cannot encode the status", 0)
		return
	}
	s.reply(w, code, message.AppCBOR, b, opts...)
}

// statusChanged is called by the desired-state store after every committed
// change: a new generation is queued for the device's observers (an
// applied report is not news to them). Only the newest generation waits
// for each observer: one that arrives while another waits replaces it.
func (s *Server) statusChanged(id string, d desired.Desired) {
	for _, o := range s.status.of(id) {
		o.mu.Lock()
		newer := d.Generation > o.sent && (o.next == nil || d.Generation > o.next.Generation)
		if newer {
			dd := d
			o.next = &dd
		}
		enqueue := newer && !o.busy
		if enqueue {
			o.busy = true
		}
		o.mu.Unlock()
		if enqueue {
			s.enqueue(o)
		}
	}
}

// enqueue queues o for a notification; workers start as needed and stop
// when the queue is empty.
func (s *Server) enqueue(o *observer) {
	ob := &s.status
	ob.mu.Lock()
	ob.queue = append(ob.queue, o)
	start := ob.workers < notifyWorkers
	if start {
		ob.workers++
	}
	ob.mu.Unlock()
	if start {
		go s.notifyWorker()
	}
}

func (s *Server) notifyWorker() {
	ob := &s.status
	for {
		ob.mu.Lock()
		if len(ob.queue) == 0 {
			ob.workers--
			ob.mu.Unlock()
			return
		}
		o := ob.queue[0]
		ob.queue[0] = nil
		ob.queue = ob.queue[1:]
		ob.mu.Unlock()
		s.flush(o)
	}
}

// flush sends o its pending generations, newest only, one at a time. A
// notification that cannot be delivered (over DTLS: not acknowledged after
// the retransmissions) ends the observation (RFC 7641 §4.5).
func (s *Server) flush(o *observer) {
	for {
		o.mu.Lock()
		d := o.next
		if d == nil || o.gone.Load() {
			o.next, o.busy = nil, false
			o.mu.Unlock()
			return
		}
		o.next = nil
		if d.Generation <= o.sent {
			// The answer to a registration already carried it.
			o.mu.Unlock()
			continue
		}
		o.sent = d.Generation
		seq := s.status.nextSeq()
		o.mu.Unlock()
		b, err := cbor.Marshal(statusDoc(*d, o.chain[0]))
		if err == nil {
			err = s.notify(o, codes.Content, message.AppCBOR, b, &seq, false)
		}
		if err != nil {
			s.log.Debug("status notification", slog.String("device", o.device), slog.Any("err", err))
			s.status.remove(o)
			o.mu.Lock()
			o.next, o.busy = nil, false
			o.mu.Unlock()
			return
		}
	}
}

// notify writes a notification to o's session: with seq, a 2.05 with the
// Observe option; without, a final one that ends the observation (RFC
// 7641 §3.2). nonConfirmable sends it without waiting for an
// acknowledgement (DTLS).
func (s *Server) notify(o *observer, code codes.Code, cf message.MediaType, body []byte, seq *uint32, nonConfirmable bool) error {
	c := o.key.conn
	m := c.AcquireMessage(c.Context())
	defer c.ReleaseMessage(m)
	m.SetCode(code)
	m.SetToken(message.Token(o.key.token))
	m.SetContentFormat(cf)
	if seq != nil {
		m.SetObserve(*seq)
	}
	if nonConfirmable {
		m.SetType(message.NonConfirmable)
	}
	m.SetBody(bytes.NewReader(body))
	return c.WriteMessage(m)
}

// finalGrace is how long a session that was sent a final notification
// stays open before it is dropped, so that the device reads the
// notification before it sees the session end (go-coap, for one, may drop
// messages still queued when a session closes). It grants nothing: every
// resource that needs a certificate checks it on each request, and a
// revoked one is refused.
const finalGrace = 500 * time.Millisecond

// endObservations sends the observers of sessions about to be dropped
// (their certificate was revoked or superseded) a final notification:
// the refusal the resource would now answer, such as 4.03 "revoked: ...".
// It is sent non-confirmable and not waited for: the revocation that
// drops the sessions does not wait for devices. Those sessions are closed
// after finalGrace; the others are returned, to be closed at once.
func (s *Server) endObservations(conns []mux.Conn) []mux.Conn {
	if s.cfg.Desired == nil {
		return conns
	}
	id, _ := s.cfg.Core.(Identifier)
	var now []mux.Conn
	for _, c := range conns {
		obs := s.status.dropConn(c)
		if len(obs) == 0 {
			now = append(now, c)
			continue
		}
		for _, o := range obs {
			e := &onboard.Error{Reason: onboard.ReasonRevoked, Msg: "the certificate of this session is no longer usable"}
			if id != nil {
				ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
				_, err := id.Identify(ctx, o.chain)
				cancel()
				var oe *onboard.Error
				if errors.As(err, &oe) {
					e = oe
				}
			}
			body := []byte(string(e.Reason) + ": " + e.Msg)
			if err := s.notify(o, codeFor(e.Reason), message.TextPlain, body, nil, true); err != nil {
				s.log.Debug("status final notification", slog.String("device", o.device), slog.Any("err", err))
			}
		}
		time.AfterFunc(finalGrace, func() { _ = c.Close() })
	}
	return now
}
