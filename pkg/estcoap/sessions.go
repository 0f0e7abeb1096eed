package estcoap

import (
	"crypto/x509"
	"fmt"
	"sync"

	"github.com/plgd-dev/go-coap/v3/mux"
)

// sessions tracks the live connections authenticated by each client
// certificate (by serial), so that revoking a certificate can drop them.
type sessions struct {
	mu    sync.Mutex
	conns map[string]map[mux.Conn]struct{}
}

func (ss *sessions) track(serial string, c mux.Conn) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conns == nil {
		ss.conns = map[string]map[mux.Conn]struct{}{}
	}
	set := ss.conns[serial]
	if set == nil {
		set = map[mux.Conn]struct{}{}
		ss.conns[serial] = set
	}
	if _, ok := set[c]; ok {
		return
	}
	set[c] = struct{}{}
	c.AddOnClose(func() {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		delete(ss.conns[serial], c)
		if len(ss.conns[serial]) == 0 {
			delete(ss.conns, serial)
		}
	})
}

// Disconnect closes every live connection authenticated by a certificate
// with one of these serials (lower-case hex), and returns how many. Those
// observing the status resource get a final notification first and are
// closed a moment later (status.go).
func (s *Server) Disconnect(serials ...string) int {
	s.sessions.mu.Lock()
	var victims []mux.Conn
	for _, sn := range serials {
		for c := range s.sessions.conns[sn] {
			victims = append(victims, c)
		}
	}
	s.sessions.mu.Unlock()
	for _, c := range s.endObservations(victims) {
		_ = c.Close()
	}
	return len(victims)
}

// trackPeer remembers the connection under its client certificate.
func (s *Server) trackPeer(c mux.Conn, chain []*x509.Certificate) {
	if len(chain) == 0 {
		return
	}
	s.sessions.track(fmt.Sprintf("%x", chain[0].SerialNumber), c)
}

// checkPeer is the handshake check of a presented client certificate.
func (s *Server) checkPeer(rawCerts [][]byte) error {
	if s.cfg.CertStatus == nil || len(rawCerts) == 0 {
		return nil
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return fmt.Errorf("estcoap: client certificate: %w", err)
	}
	return s.cfg.CertStatus(leaf)
}
