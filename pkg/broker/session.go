package broker

import (
	"crypto/x509"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// session is the broker's state for one authenticated connection. It is keyed
// by the mochi client pointer, never by the client identifier: when a client
// takes over the session of an earlier connection with the same identifier,
// both connections exist for a moment and each keeps its own state.
type session struct {
	client *mqtt.Client
	conn   *conn
	chain  []*x509.Certificate
	id     string // Identity.ID at CONNECT, equal to the client identifier
	serial string // leaf serial, lower-case hex
	remote string
	acl    atomic.Pointer[acl]
	kicked atomic.Bool // set once the broker drops the client
}

// registry indexes live sessions by client, device ID and leaf serial.
type registry struct {
	mu       sync.RWMutex
	byClient map[*mqtt.Client]*session
	byID     map[string]map[*session]struct{}
	bySerial map[string]map[*session]struct{}
}

func newRegistry() *registry {
	return &registry{
		byClient: make(map[*mqtt.Client]*session),
		byID:     make(map[string]map[*session]struct{}),
		bySerial: make(map[string]map[*session]struct{}),
	}
}

func (r *registry) add(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.byClient[s.client] = s
	addTo(r.byID, s.id, s)
	addTo(r.bySerial, s.serial, s)
}

// remove drops s if it is still registered and reports whether it was; it
// is safe to call more than once.
func (r *registry) remove(s *session) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byClient[s.client] != s {
		return false
	}
	delete(r.byClient, s.client)
	removeFrom(r.byID, s.id, s)
	removeFrom(r.bySerial, s.serial, s)
	return true
}

func (r *registry) get(cl *mqtt.Client) *session {
	r.mu.RLock()
	s := r.byClient[cl]
	r.mu.RUnlock()
	return s
}

func (r *registry) len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.byClient)
}

func (r *registry) withID(id string) []*session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return collect(r.byID[id], nil)
}

func (r *registry) withSerials(serials map[string]struct{}) []*session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	var out []*session
	for s := range serials {
		out = collect(r.bySerial[s], out)
	}
	return out
}

func (r *registry) all() []*session {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*session, 0, len(r.byClient))
	for _, s := range r.byClient {
		out = append(out, s)
	}
	return out
}

func addTo(m map[string]map[*session]struct{}, k string, s *session) {
	set := m[k]
	if set == nil {
		set = make(map[*session]struct{}, 1)
		m[k] = set
	}
	set[s] = struct{}{}
}

func removeFrom(m map[string]map[*session]struct{}, k string, s *session) {
	set := m[k]
	delete(set, s)
	if len(set) == 0 {
		delete(m, k)
	}
}

func collect(set map[*session]struct{}, out []*session) []*session {
	for s := range set {
		out = append(out, s)
	}
	return out
}
