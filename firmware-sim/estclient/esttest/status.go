package esttest

import (
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
)

// StatusPath is the status resource the server serves, as Embark does.
const StatusPath = "/embark/status"

// Status is the document of the status resource, in Embark's format (CBOR
// with text keys).
type Status struct {
	Generation uint64 `cbor:"generation"`
	Rotate     bool   `cbor:"rotate,omitempty"`
	Campaign   string `cbor:"campaign,omitempty"`
	Zone       string `cbor:"zone,omitempty"`
	Revoked    bool   `cbor:"revoked,omitempty"`
	Reason     string `cbor:"reason,omitempty"`
	Applied    uint64 `cbor:"applied"`
}

// statusState is the status resource's state: a document per device,
// named by the subject common name of its LDevID (the serial of the
// devices the factory makes).
type statusState struct {
	mu        sync.Mutex
	docs      map[string]Status
	applied   map[string][]uint64
	observers map[string]map[*statusObserver]struct{}
	revoked   map[string]string
	seq       uint32
}

type statusObserver struct {
	conn  mux.Conn
	token message.Token
}

func (st *statusState) initLocked() {
	if st.docs == nil {
		st.docs, st.applied = map[string]Status{}, map[string][]uint64{}
		st.observers, st.revoked = map[string]map[*statusObserver]struct{}{}, map[string]string{}
	}
}

func (s *Server) routeStatus(r *mux.Router) {
	_ = r.Handle(StatusPath, mux.HandlerFunc(s.status))
}

// status serves GET (Observe=0 registers) and POST {"applied": n} for a
// session authenticated with an LDevID of the Embark intermediate.
func (s *Server) status(w mux.ResponseWriter, req *mux.Message) {
	peer := PeerChain(w)
	if len(peer) == 0 {
		text(w, codes.Unauthorized, "unauthenticated: no client certificate")
		return
	}
	if err := peer[0].CheckSignatureFrom(s.pki.Intermediate.Cert); err != nil {
		text(w, codes.Forbidden, "wrong_credential: the status is served to LDevIDs")
		return
	}
	cn := peer[0].Subject.CommonName
	st := &s.statusState
	st.mu.Lock()
	st.initLocked()
	reason, revoked := st.revoked[cn]
	st.mu.Unlock()
	if revoked {
		text(w, codes.Forbidden, "revoked: "+reason)
		return
	}
	switch req.Code() {
	case codes.GET:
		var opts []message.Option
		st.mu.Lock()
		if v, err := req.Options().Observe(); err == nil && v == 0 {
			o := &statusObserver{conn: w.Conn(), token: bytes.Clone(req.Token())}
			set := st.observers[cn]
			if set == nil {
				set = map[*statusObserver]struct{}{}
				st.observers[cn] = set
			}
			set[o] = struct{}{}
			w.Conn().AddOnClose(func() {
				st.mu.Lock()
				delete(st.observers[cn], o)
				st.mu.Unlock()
			})
			st.seq++
			opts = append(opts, observeOption(st.seq))
		} else {
			for o := range st.observers[cn] {
				if o.conn == w.Conn() && bytes.Equal(o.token, req.Token()) {
					delete(st.observers[cn], o)
				}
			}
		}
		doc := st.docs[cn]
		st.mu.Unlock()
		reply(w, codes.Content, doc, opts...)
	case codes.POST:
		var body []byte
		if b := req.Body(); b != nil {
			body, _ = io.ReadAll(b)
		}
		var rep struct {
			Applied *uint64 `cbor:"applied"`
		}
		if err := cbor.Unmarshal(body, &rep); err != nil || rep.Applied == nil {
			text(w, codes.BadRequest, "bad_request: want {\"applied\": n}")
			return
		}
		st.mu.Lock()
		doc := st.docs[cn]
		if *rep.Applied > doc.Generation {
			st.mu.Unlock()
			text(w, codes.BadRequest, "bad_request: generation not issued yet")
			return
		}
		st.applied[cn] = append(st.applied[cn], *rep.Applied)
		doc.Applied = max(doc.Applied, *rep.Applied)
		st.docs[cn] = doc
		st.mu.Unlock()
		reply(w, codes.Changed, doc)
	default:
		text(w, codes.MethodNotAllowed, "bad_request: status answers GET and POST")
	}
}

func reply(w mux.ResponseWriter, code codes.Code, doc Status, opts ...message.Option) {
	b, err := cbor.Marshal(doc)
	if err != nil {
		text(w, codes.InternalServerError, "internal: "+err.Error())
		return
	}
	_ = w.SetResponse(code, message.AppCBOR, bytes.NewReader(b), opts...)
}

func observeOption(seq uint32) message.Option {
	buf := make([]byte, 4)
	n, _ := message.EncodeUint32(buf, seq)
	return message.Option{ID: message.Observe, Value: buf[:n]}
}

// SetStatus changes the status of device cn as Embark's desired state
// does (rotate and campaign hold for one generation), as a new generation,
// and notifies its observers. It returns the new document.
func (s *Server) SetStatus(cn string, edit func(*Status)) Status {
	st := &s.statusState
	st.mu.Lock()
	st.initLocked()
	doc := st.docs[cn]
	doc.Rotate, doc.Campaign = false, ""
	edit(&doc)
	doc.Generation++
	st.docs[cn] = doc
	var obs []*statusObserver
	for o := range st.observers[cn] {
		obs = append(obs, o)
	}
	st.seq++
	seq := st.seq
	st.mu.Unlock()
	b, _ := cbor.Marshal(doc)
	for _, o := range obs {
		_ = s.notify(o, codes.Content, message.AppCBOR, b, &seq)
	}
	return doc
}

// Revoke refuses device cn from now on ("revoked: reason"), and sends its
// observers a final 4.03 notification before it drops their sessions.
func (s *Server) Revoke(cn, reason string) {
	st := &s.statusState
	st.mu.Lock()
	st.initLocked()
	st.revoked[cn] = reason
	var obs []*statusObserver
	for o := range st.observers[cn] {
		obs = append(obs, o)
	}
	delete(st.observers, cn)
	st.mu.Unlock()
	for _, o := range obs {
		_ = s.notify(o, codes.Forbidden, message.TextPlain, []byte("revoked: "+reason), nil)
		// As Embark does: the session ends a little after the final
		// notification, so that the client reads it first.
		time.AfterFunc(500*time.Millisecond, func() { _ = o.conn.Close() })
	}
}

func (s *Server) notify(o *statusObserver, code codes.Code, cf message.MediaType, body []byte, seq *uint32) error {
	m := o.conn.AcquireMessage(o.conn.Context())
	defer o.conn.ReleaseMessage(m)
	m.SetCode(code)
	m.SetToken(o.token)
	m.SetContentFormat(cf)
	if seq != nil {
		m.SetObserve(*seq)
	} else {
		m.SetType(message.NonConfirmable)
	}
	m.SetBody(bytes.NewReader(body))
	return o.conn.WriteMessage(m)
}

// Reports lists the generations device cn reported applied, in order.
func (s *Server) Reports(cn string) []uint64 {
	st := &s.statusState
	st.mu.Lock()
	defer st.mu.Unlock()
	return append([]uint64(nil), st.applied[cn]...)
}

// Observers is how many observations of device cn's status are registered.
func (s *Server) Observers(cn string) int {
	st := &s.statusState
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.observers[cn])
}
