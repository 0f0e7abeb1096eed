package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pki"
)

// Lifetimes of Embark's own certificates.
const (
	serverCertLifetime    = 90 * 24 * time.Hour
	responderCertLifetime = 90 * 24 * time.Hour
)

// caParts is what a CA rollover changes while the server runs.
//
// At a rollover the CA issues Embark's server certificate (CoAP, HTTPS) and
// MQTT responder certificate again under the new intermediate: new
// DTLS/TLS sessions get the new server certificate, and Embark's MQTT
// client reconnects to the broker with the new responder (devices keep
// their broker connections). Devices verify both against the root, so this
// is seamless for them. The embedded MQTT broker presents the same server
// certificate, asked for at each handshake.
type caParts struct {
	mu sync.Mutex // serialises rollovers and retirements

	certMu    sync.RWMutex
	server    *tls.Certificate  // what new CoAP and HTTPS sessions get
	responder *x509.Certificate // the MQTT responder certificate in use
}

// serverNames splits the configured server names into DNS names and IP
// addresses.
func (s *Server) serverNames() (dns []string, ips []net.IP) {
	for _, n := range s.cfg.ServerNames {
		if ip := net.ParseIP(n); ip != nil {
			ips = append(ips, ip)
		} else {
			dns = append(dns, n)
		}
	}
	return dns, ips
}

// issueServerCertificate gets the server certificate from the CA (the
// stored one while it fits, a new one under the active intermediate after a
// rollover) and makes it the one new sessions get.
func (s *Server) issueServerCertificate() (tls.Certificate, error) {
	dns, ips := s.serverNames()
	c, err := s.ca.ServerCertificate(dns, ips, serverCertLifetime)
	if err != nil {
		return tls.Certificate{}, err
	}
	s.own.certMu.Lock()
	s.own.server = &c
	s.own.certMu.Unlock()
	return c, nil
}

// currentServerCertificate is the GetCertificate of the CoAP and HTTPS
// listeners.
func (s *Server) currentServerCertificate() (*tls.Certificate, error) {
	s.own.certMu.RLock()
	defer s.own.certMu.RUnlock()
	if s.own.server == nil {
		return nil, errors.New("server: no server certificate")
	}
	return s.own.server, nil
}

// httpsCertificate adapts currentServerCertificate to crypto/tls.
func (s *Server) httpsCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.currentServerCertificate()
}

// newResponder returns the signer of Embark's MQTT answers and commands,
// with the responder certificate of the active intermediate.
func (s *Server) newResponder() (*mqttwire.Signer, error) {
	rc, err := s.ca.ResponderCertificate(&url.URL{Scheme: "urn", Opaque: "embark:responder"}, responderCertLifetime)
	if err != nil {
		return nil, err
	}
	key, ok := rc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("server: responder key is a %T", rc.PrivateKey)
	}
	chain := []*x509.Certificate{rc.Leaf}
	for _, der := range rc.Certificate[1:] { // the intermediate, and its bridge after a root rollover
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("server: responder chain: %w", err)
		}
		chain = append(chain, c)
	}
	r, err := mqttwire.NewSigner(key, chain)
	if err != nil {
		return nil, err
	}
	s.own.certMu.Lock()
	s.own.responder = rc.Leaf
	s.own.certMu.Unlock()
	return r, nil
}

// moveResponder makes Embark's MQTT client sign with a responder
// certificate of the active intermediate: it reconnects to the broker
// with the new signer. Devices keep their own connections; requests in
// flight are redelivered by the broker, which holds Embark's session.
func (s *Server) moveResponder() error {
	p := s.mqtt
	if p == nil {
		return nil
	}
	r, err := s.newResponder()
	if err != nil {
		return err
	}
	p.clientMu.Lock()
	defer p.clientMu.Unlock()
	running := p.cancel != nil
	p.stopMQTTClientLocked()
	p.responder = r
	if !running || p.closed {
		return nil
	}
	return s.startMQTTClientLocked(p)
}

// RolloverCA introduces a new intermediate (with newRoot, a new root too;
// see pki.CA.Rollover) and moves Embark's own certificates onto it; /crts
// then lists the new intermediate, and its CRL is built. The rollover is
// audited.
func (s *Server) RolloverCA(ctx context.Context, newRoot bool, actor string) (pki.Issuer, error) {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	prev := s.ca.ActiveIssuer()
	is, err := s.ca.Rollover(pki.RolloverOptions{NewRoot: newRoot})
	if err != nil {
		return pki.Issuer{}, err
	}
	detail := fmt.Sprintf("generation %d, intermediate %s (%s), root %s; previous %s stays valid until retired",
		is.Generation, is.ID, is.Subject, is.Root, prev.ID)
	if err := s.auditCA(ctx, actor, "ca-rollover", detail); err != nil {
		s.log.Error("audit", slog.Any("err", err))
	}
	s.caChanged()
	s.log.Info("CA rolled over", slog.Int("generation", is.Generation), slog.String("intermediate", is.ID),
		slog.Bool("new_root", newRoot), slog.String("previous", prev.ID), slog.String("by", actor))
	return is, nil
}

// caChanged follows a change of the CA's intermediates: the server and
// responder certificates, /crts and the CRLs.
func (s *Server) caChanged() {
	if _, err := s.issueServerCertificate(); err != nil {
		s.log.Error("server certificate after a CA change", slog.Any("err", err))
	}
	if err := s.moveResponder(); err != nil {
		s.log.Error("MQTT responder after a CA change", slog.Any("err", err))
	}
	if s.coap != nil {
		if err := s.coap.RefreshCACerts(); err != nil {
			s.log.Error("coap /crts after a CA change", slog.Any("err", err))
		}
	}
	s.crl.Trigger()
}

// RetireIntermediate retires a previous intermediate once nothing live
// chains to it: no certificate in the registry that may still authenticate
// (see CAStatus), and none of Embark's own certificates in use. Otherwise
// it fails with pki.ErrIssuerInUse and changes nothing. The retirement is
// audited.
func (s *Server) RetireIntermediate(ctx context.Context, id, actor string) (pki.Issuer, error) {
	s.own.mu.Lock()
	defer s.own.mu.Unlock()
	is, err := s.ca.Issuer(id)
	if err != nil {
		return pki.Issuer{}, err
	}
	if is.State == pki.IssuerActive {
		return pki.Issuer{}, fmt.Errorf("server: retire %s: roll over first: %w", is.ID, pki.ErrActiveIssuer)
	}
	if is.State == pki.IssuerRetired {
		return is, nil
	}
	// A previous intermediate issues nothing new: the count can only go
	// down between this check and the retirement.
	live, err := s.liveCertificates(ctx)
	if err != nil {
		return pki.Issuer{}, err
	}
	if n := live[is.ID]; n > 0 {
		return pki.Issuer{}, fmt.Errorf("server: retire %s: %d live certificates chain to it (renew or revoke them first): %w", is.ID, n, pki.ErrIssuerInUse)
	}
	if own := s.ownCertificates()[is.ID]; len(own) > 0 {
		return pki.Issuer{}, fmt.Errorf("server: retire %s: Embark's %s still chain to it: %w",
			is.ID, strings.Join(own, ", "), pki.ErrIssuerInUse)
	}
	is, err = s.ca.Retire(is.ID)
	if err != nil {
		return pki.Issuer{}, err
	}
	detail := fmt.Sprintf("generation %d, intermediate %s (%s)", is.Generation, is.ID, is.Subject)
	if err := s.auditCA(ctx, actor, "ca-retire", detail); err != nil {
		s.log.Error("audit", slog.Any("err", err))
	}
	s.caChanged()
	s.log.Info("intermediate retired", slog.Int("generation", is.Generation), slog.String("intermediate", is.ID), slog.String("by", actor))
	return is, nil
}

// liveCertificates counts, by intermediate key id, the certificates in the
// registry that may still authenticate: issued or in use, and not expired
// (or expired within the device's renewal grace).
func (s *Server) liveCertificates(ctx context.Context) (map[string]int, error) {
	now := s.clock()
	out := map[string]int{}
	err := s.store.View(ctx, func(r store.Reader) error {
		clear(out)
		return r.Devices("", func(d device.Device) (bool, error) {
			certs, err := r.CertificatesOf(d.ID)
			if err != nil {
				return false, err
			}
			for _, c := range certs {
				if !c.Status.Usable() || now.After(c.NotAfter.Add(d.Profile.RenewGrace)) {
					continue
				}
				leaf, err := x509.ParseCertificate(c.DER)
				if err != nil {
					return false, fmt.Errorf("certificate %s: %w", c.Serial, err)
				}
				if is, ok := s.ca.IssuerOf(leaf); ok {
					out[is.ID]++
				}
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("server: live certificates: %w", err)
	}
	return out, nil
}

// ownCertificates names, by intermediate key id, Embark's own certificates
// in use.
func (s *Server) ownCertificates() map[string][]string {
	out := map[string][]string{}
	add := func(c *x509.Certificate, name string) {
		if c == nil {
			return
		}
		if is, ok := s.ca.IssuerOf(c); ok {
			out[is.ID] = append(out[is.ID], name)
		}
	}
	s.own.certMu.RLock()
	defer s.own.certMu.RUnlock()
	if s.own.server != nil {
		add(s.own.server.Leaf, "server certificate")
	}
	add(s.own.responder, "MQTT responder certificate")
	return out
}

// CAStatus describes the CA's intermediates with the live certificates
// that chain to each.
func (s *Server) CAStatus(ctx context.Context) (admin.CAStatus, error) {
	live, err := s.liveCertificates(ctx)
	if err != nil {
		return admin.CAStatus{}, err
	}
	own := s.ownCertificates()
	st := admin.CAStatus{Active: s.ca.ActiveIssuer().ID}
	for _, is := range s.ca.Issuers() {
		st.Intermediates = append(st.Intermediates, admin.CAIntermediate{Issuer: is, LiveCertificates: live[is.ID], EmbarkCertificates: own[is.ID]})
	}
	return st, nil
}

func (s *Server) auditCA(ctx context.Context, actor, action, detail string) error {
	now := s.clock()
	return s.store.Update(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: action, Outcome: "ok", Detail: detail})
		return err
	})
}

// caAdmin serves the admin API's CA endpoints.
type caAdmin struct{ s *Server }

func (c caAdmin) CAStatus(ctx context.Context) (admin.CAStatus, error) { return c.s.CAStatus(ctx) }

func (c caAdmin) Rollover(ctx context.Context, req admin.RolloverRequest, actor string) (admin.CAStatus, error) {
	if _, err := c.s.RolloverCA(ctx, req.NewRoot, actor); err != nil {
		return admin.CAStatus{}, err
	}
	return c.s.CAStatus(ctx)
}

func (c caAdmin) Retire(ctx context.Context, id, actor string) (admin.CAStatus, error) {
	if _, err := c.s.RetireIntermediate(ctx, id, actor); err != nil {
		return admin.CAStatus{}, err
	}
	return c.s.CAStatus(ctx)
}

func (c caAdmin) CRL(ctx context.Context, id string) ([]byte, error) {
	return c.s.crl.CurrentFor(ctx, id)
}
