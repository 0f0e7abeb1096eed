package admin

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/embark-iot/embark/pkg/operator"
	"github.com/embark-iot/embark/pkg/store"
)

// Operators is what the admin API needs to authenticate operators over
// HTTPS and to issue their certificates.
type Operators struct {
	// CA is the operator CA: every remote request must present a
	// certificate that chains to it.
	CA *operator.CA
	// ServerRoots are the roots of the server's own TLS certificate; a new
	// operator receives them to authenticate the server.
	ServerRoots []*x509.Certificate
}

// Headers of every answer over HTTPS: the TLS version and key exchange of
// the connection, as the server sees them.
const (
	HeaderTLSVersion = "Embark-TLS-Version"
	HeaderTLSGroup   = "Embark-TLS-Group"
)

// actorHeader carries the local user's name over the socket. It is
// ignored (and removed) on HTTPS, where the certificate names the actor.
const actorHeader = "X-Embark-Actor"

// routeRoles is the minimum role of every route, by mux pattern. A remote
// request whose route has no entry is refused (deny by default); the
// tests check that every registered route has one. GET patterns also
// match HEAD.
var routeRoles = map[string]operator.Role{
	"GET /v1/status":                                    operator.RoleAuditor,
	"GET /v1/devices":                                   operator.RoleAuditor,
	"GET /v1/devices/{id}":                              operator.RoleAuditor,
	"GET /v1/devices/{id}/provenance":                   operator.RoleAuditor,
	"GET /v1/devices/{id}/desired":                      operator.RoleAuditor,
	"GET /v1/profiles":                                  operator.RoleAuditor,
	"GET /v1/manufacturers":                             operator.RoleAuditor,
	"GET /v1/audit":                                     operator.RoleAuditor,
	"GET /v1/audit/bundle":                              operator.RoleAuditor,
	"GET /v1/vuln":                                      operator.RoleAuditor,
	"GET /v1/transfers/{id}":                            operator.RoleAuditor,
	"GET /v1/certs/expiring":                            operator.RoleAuditor,
	"GET /v1/policy":                                    operator.RoleAuditor,
	"GET /v1/policy/explain/{id}":                       operator.RoleAuditor,
	"GET /v1/crl":                                       operator.RoleAuditor,
	"GET /v1/ca":                                        operator.RoleAuditor,
	"GET /v1/manufacturers/{name}/masa":                 operator.RoleAuditor,
	"GET /v1/operators":                                 operator.RoleAuditor,
	"GET /v1/openapi.yaml":                              operator.RoleAuditor,
	"GET /v1/campaigns":                                 operator.RoleAuditor,
	"GET /v1/campaigns/{id}":                            operator.RoleAuditor,
	"POST /v1/devices/{id}/approve":                     operator.RoleOperator,
	"POST /v1/devices/{id}/deny":                        operator.RoleOperator,
	"POST /v1/devices/{id}/revoke":                      operator.RoleOperator,
	"POST /v1/devices/{id}/decommission":                operator.RoleOperator,
	"POST /v1/devices/{id}/reonboard":                   operator.RoleOperator,
	"POST /v1/devices/{id}/rotate":                      operator.RoleOperator,
	"POST /v1/campaigns":                                operator.RoleOperator,
	"POST /v1/campaigns/{id}/cancel":                    operator.RoleOperator,
	"POST /v1/reevaluate":                               operator.RoleOperator,
	"POST /v1/vouchers/prefetch":                        operator.RoleOperator,
	"POST /v1/policy/explain/{id}":                      operator.RoleOperator, // a dry run: changes nothing
	"POST /v1/policy/test":                              operator.RoleOperator, // a dry run: changes nothing
	"POST /v1/manufacturers":                            operator.RoleAdmin,
	"POST /v1/manufacturers/{name}/distrust":            operator.RoleAdmin,
	"POST /v1/manufacturers/{name}/keys/{key}/distrust": operator.RoleAdmin,
	"POST /v1/manifests":                                operator.RoleAdmin,
	"PUT /v1/manufacturers/{name}/masa":                 operator.RoleAdmin,
	"POST /v1/ca/rollover":                              operator.RoleAdmin,
	"POST /v1/ca/intermediates/{id}/retire":             operator.RoleAdmin,
	"POST /v1/vuln":                                     operator.RoleAdmin,
	"POST /v1/transfers/export":                         operator.RoleAdmin,
	"POST /v1/transfers":                                operator.RoleAdmin,
	"POST /v1/operators":                                operator.RoleAdmin,
	"DELETE /v1/operators/{name}":                       operator.RoleAdmin,
}

// RouteRole returns the minimum role of a route (a mux pattern such as
// "POST /v1/devices/{id}/revoke") and whether it has one.
func RouteRole(pattern string) (operator.Role, bool) {
	r, ok := routeRoles[pattern]
	return r, ok
}

type identityKey struct{}

// OperatorOf returns the operator who made a request over HTTPS, as
// authenticated by its certificate.
func OperatorOf(ctx context.Context) (operator.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(operator.Identity)
	return id, ok
}

// local reports whether a request came over the local admin socket or
// from an in-process client: no TLS, and no listener or a unix one.
func local(r *http.Request) bool {
	if r.TLS != nil {
		return false
	}
	a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true
	}
	_, unix := a.(*net.UnixAddr)
	return unix
}

// authorize wraps mux with the role check. A local request (socket 0600, or
// in process) is the machine's owner and passes. A remote one must come
// over TLS with a verified certificate of the operator CA that is
// registered and not removed, and its role must reach the route's minimum
// role; a route without an entry in the role table is refused.
func (h *handler) authorize(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if local(r) {
			mux.ServeHTTP(w, r)
			return
		}
		if r.TLS == nil {
			h.refuse(w, r, http.StatusForbidden, "the admin API is served only on the local socket and over HTTPS with an operator certificate", operator.Identity{})
			return
		}
		w.Header().Set(HeaderTLSVersion, TLSVersionName(r.TLS.Version))
		w.Header().Set(HeaderTLSGroup, r.TLS.CurveID.String())
		id, code, err := h.authenticate(r)
		if err != nil {
			h.refuse(w, r, code, err.Error(), id)
			return
		}
		r.Header.Del(actorHeader)
		_, pattern := mux.Handler(r)
		if pattern == "" {
			// No route: the mux answers 404 or 405, and no handler runs.
			mux.ServeHTTP(w, r)
			return
		}
		need, ok := routeRoles[pattern]
		if !ok {
			// A route missing from the table (the tests catch those), or
			// the mux's redirect to a cleaned path.
			h.refuse(w, r, http.StatusForbidden, fmt.Sprintf("forbidden: route %q is not open to remote operators", pattern), id)
			return
		}
		readOnly := r.Method == http.MethodGet || r.Method == http.MethodHead
		if !id.Role.Allows(need) || (id.Role == operator.RoleAuditor && !readOnly) {
			h.refuse(w, r, http.StatusForbidden, fmt.Sprintf("forbidden: operator %q has role %s; %s needs role %s", id.Name, id.Role, pattern, need), id)
			return
		}
		h.b.Logger.Debug("admin request", slog.String("operator", id.Name), slog.String("role", id.Role.String()),
			slog.String("route", pattern), slog.String("tls", DescribeTLS(r.TLS)))
		mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// authenticate returns the operator of a request over TLS, or the status
// and reason of a refusal.
func (h *handler) authenticate(r *http.Request) (operator.Identity, int, error) {
	ops := h.b.Operators
	if ops == nil || ops.CA == nil {
		return operator.Identity{}, http.StatusForbidden, errors.New("operator authentication is not configured on this server")
	}
	if len(r.TLS.VerifiedChains) == 0 {
		return operator.Identity{}, http.StatusUnauthorized, errors.New("an operator certificate is required")
	}
	root := ops.CA.Root()
	var leaf *x509.Certificate
	for _, chain := range r.TLS.VerifiedChains {
		if len(chain) > 0 && bytes.Equal(chain[len(chain)-1].Raw, root.Raw) {
			leaf = chain[0]
			break
		}
	}
	if leaf == nil {
		return operator.Identity{}, http.StatusForbidden, errors.New("forbidden: the certificate is not from the operator CA")
	}
	id, err := operator.IdentityOf(leaf)
	if err != nil {
		return operator.Identity{}, http.StatusForbidden, fmt.Errorf("forbidden: %w", err)
	}
	if now := h.b.Clock(); now.After(leaf.NotAfter) {
		return id, http.StatusForbidden, fmt.Errorf("forbidden: the certificate of operator %q expired at %s", id.Name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error { return operator.Check(rd, id) }); err != nil {
		if errors.Is(err, operator.ErrRemoved) || errors.Is(err, operator.ErrUnknown) {
			return id, http.StatusForbidden, fmt.Errorf("forbidden: %w", err)
		}
		return id, http.StatusInternalServerError, err
	}
	return id, 0, nil
}

func (h *handler) refuse(w http.ResponseWriter, r *http.Request, code int, msg string, id operator.Identity) {
	h.b.Logger.Warn("admin request refused", slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.String("remote", r.RemoteAddr), slog.String("operator", id.Name), slog.Int("status", code), slog.String("reason", msg))
	writeJSON(w, code, Error{Error: msg})
}

// TLSPolicy is what a back-end TLS link accepts: the lowest version and the
// key exchanges.
type TLSPolicy struct {
	MinVersion uint16
	Groups     []tls.CurveID
}

// HybridOnly is the default policy of back-end links: TLS 1.3 with the
// hybrid post-quantum key exchange X25519MLKEM768 only.
func HybridOnly() TLSPolicy {
	return TLSPolicy{MinVersion: tls.VersionTLS13, Groups: []tls.CurveID{tls.X25519MLKEM768}}
}

// Classical reports whether p accepts something weaker than HybridOnly: a
// classical key exchange or TLS 1.2.
func (p TLSPolicy) Classical() bool {
	return p.MinVersion < tls.VersionTLS13 || slices.ContainsFunc(p.Groups, func(g tls.CurveID) bool { return g != tls.X25519MLKEM768 })
}

// ErrTLSPolicy: a TLS policy that cannot be used, or a connection outside it.
var ErrTLSPolicy = errors.New("TLS policy")

func (p TLSPolicy) check() error {
	if !slices.Contains(p.Groups, tls.X25519MLKEM768) {
		return fmt.Errorf("%w: groups %v lack X25519MLKEM768", ErrTLSPolicy, p.Groups)
	}
	if p.MinVersion != tls.VersionTLS13 && p.MinVersion != tls.VersionTLS12 {
		return fmt.Errorf("%w: minimum version %s", ErrTLSPolicy, TLSVersionName(p.MinVersion))
	}
	return nil
}

// accepts reports whether a connection state is within p.
func (p TLSPolicy) accepts(cs tls.ConnectionState) error {
	if cs.Version < p.MinVersion {
		return fmt.Errorf("%w: %s negotiated, at least %s required", ErrTLSPolicy, TLSVersionName(cs.Version), TLSVersionName(p.MinVersion))
	}
	if !slices.Contains(p.Groups, cs.CurveID) {
		return fmt.Errorf("%w: key exchange %s negotiated, want one of %v", ErrTLSPolicy, cs.CurveID, p.Groups)
	}
	return nil
}

// ServerTLSConfig returns the TLS configuration of the HTTPS admin API:
// the server presents cert, requires a client certificate that chains to
// operatorCA, and accepts only what p allows (checked again on every
// handshake, whatever the TLS library's defaults). Each handshake's
// version and key exchange are logged at debug level.
func ServerTLSConfig(cert tls.Certificate, operatorCA *x509.Certificate, p TLSPolicy, log *slog.Logger) (*tls.Config, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	if operatorCA == nil {
		return nil, errors.New("admin: server TLS: no operator CA")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pool := x509.NewCertPool()
	pool.AddCert(operatorCA)
	groups := slices.Clone(p.Groups)
	return &tls.Config{
		MinVersion:       p.MinVersion,
		CurvePreferences: groups,
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        pool,
		VerifyConnection: func(cs tls.ConnectionState) error {
			err := p.accepts(cs)
			who := ""
			if len(cs.PeerCertificates) > 0 {
				who = cs.PeerCertificates[0].Subject.CommonName
			}
			log.Debug("admin TLS handshake", slog.String("tls", DescribeTLS(&cs)), slog.String("client", who), slog.Any("err", err))
			return err
		},
	}, nil
}

// ClientTLSConfig returns the TLS configuration of an operator client:
// TLS 1.3 with X25519MLKEM768 only, the operator certificate cert, and the
// server verified against roots.
func ClientTLSConfig(cert tls.Certificate, roots *x509.CertPool) *tls.Config {
	p := HybridOnly()
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		CurvePreferences: slices.Clone(p.Groups),
		Certificates:     []tls.Certificate{cert},
		RootCAs:          roots,
		VerifyConnection: func(cs tls.ConnectionState) error { return p.accepts(cs) },
	}
}

// TLSVersionName returns "TLS1.3", "TLS1.2", ...
func TLSVersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS1.3"
	case tls.VersionTLS12:
		return "TLS1.2"
	case tls.VersionTLS11:
		return "TLS1.1"
	case tls.VersionTLS10:
		return "TLS1.0"
	}
	return fmt.Sprintf("TLS(0x%04x)", v)
}

// DescribeTLS returns a connection's version and key exchange, as in
// "TLS1.3 X25519MLKEM768".
func DescribeTLS(cs *tls.ConnectionState) string {
	if cs == nil {
		return ""
	}
	return TLSVersionName(cs.Version) + " " + cs.CurveID.String()
}

//go:embed openapi.yaml
var openapiDoc []byte

// OpenAPI returns the OpenAPI 3.0 document of the admin API (YAML).
func OpenAPI() []byte { return bytes.Clone(openapiDoc) }

// registerAuth adds:
//
//	GET    /v1/openapi.yaml           this API's OpenAPI document
//	GET    /v1/operators              registered and removed operators
//	POST   /v1/operators              OperatorAddRequest -> OperatorAddResult
//	DELETE /v1/operators/{name}       remove an operator (?reason=...)
func (h *handler) registerAuth(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openapiDoc)
	})
	mux.HandleFunc("GET /v1/operators", h.listOperators)
	mux.HandleFunc("POST /v1/operators", h.addOperator)
	mux.HandleFunc("DELETE /v1/operators/{name}", h.removeOperator)
}

// OperatorList is the answer of GET /v1/operators.
type OperatorList struct {
	Operators []operator.Record  `json:"operators"`
	Removed   []operator.Removal `json:"removed"`
}

// OperatorAddRequest is the body of POST /v1/operators: the operator's name
// and role, and its public key (PEM "PUBLIC KEY"; its private key never
// leaves the operator).
type OperatorAddRequest struct {
	Name      string `json:"name"`
	Role      string `json:"role"`
	PublicKey string `json:"public_key"`
	// Lifetime is a Go duration ("8760h"); default one year.
	Lifetime string `json:"lifetime,omitempty"`
}

// OperatorAddResult is the answer of POST /v1/operators.
type OperatorAddResult struct {
	Operator operator.Record `json:"operator"`
	// Certificate is the operator certificate (PEM).
	Certificate string `json:"certificate"`
	// OperatorCA is the operator CA certificate (PEM).
	OperatorCA string `json:"operator_ca"`
	// ServerCA holds the roots that authenticate the server (PEM).
	ServerCA string `json:"server_ca"`
}

func (h *handler) operators(w http.ResponseWriter) (*Operators, bool) {
	if h.b.Operators == nil || h.b.Operators.CA == nil {
		writeJSON(w, http.StatusServiceUnavailable, Error{Error: "no operator CA on this server"})
		return nil, false
	}
	return h.b.Operators, true
}

func (h *handler) listOperators(w http.ResponseWriter, r *http.Request) {
	var out OperatorList
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		var err error
		out.Operators, out.Removed, err = operator.List(rd)
		return err
	}); err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) addOperator(w http.ResponseWriter, r *http.Request) {
	ops, ok := h.operators(w)
	if !ok {
		return
	}
	body, ok := h.readAtMost(w, r, 64<<10)
	if !ok {
		return
	}
	var req OperatorAddRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		h.bad(w, "body: "+err.Error())
		return
	}
	role, err := operator.ParseRole(req.Role)
	if err != nil {
		h.bad(w, err.Error())
		return
	}
	if err := operator.CheckName(req.Name); err != nil {
		h.bad(w, err.Error())
		return
	}
	lifetime := operator.DefaultLifetime
	if req.Lifetime != "" {
		if lifetime, err = time.ParseDuration(req.Lifetime); err != nil {
			h.bad(w, "lifetime: want a Go duration such as 8760h")
			return
		}
	}
	block, _ := pem.Decode([]byte(req.PublicKey))
	if block == nil || block.Type != "PUBLIC KEY" {
		h.bad(w, `public_key: want a PEM "PUBLIC KEY" block`)
		return
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		h.bad(w, "public_key: "+err.Error())
		return
	}
	// Refuse a taken name before signing anything; Add checks again
	// atomically.
	if err := h.b.Store.View(r.Context(), func(rd store.Reader) error {
		_, err := operator.Get(rd, req.Name)
		return err
	}); err == nil {
		writeJSON(w, http.StatusConflict, Error{Error: fmt.Sprintf("%v: %s (remove it first)", operator.ErrExists, req.Name)})
		return
	} else if !errors.Is(err, operator.ErrUnknown) {
		h.fail(w, err)
		return
	}
	cert, err := ops.CA.Issue(req.Name, role, pub, lifetime)
	if err != nil {
		h.operatorFail(w, err)
		return
	}
	who := actor(r)
	rec := operator.Record{Name: req.Name, Role: role, Serial: operator.SerialOf(cert), NotAfter: cert.NotAfter, Added: h.b.Clock(), AddedBy: who}
	if err := operator.Add(r.Context(), h.b.Store, rec, who); err != nil {
		h.operatorFail(w, err)
		return
	}
	h.b.Logger.Info("operator added", slog.String("name", rec.Name), slog.String("role", role.String()),
		slog.String("serial", rec.Serial), slog.String("by", who))
	var roots []byte
	for _, c := range ops.ServerRoots {
		roots = append(roots, pemCert(c)...)
	}
	writeJSON(w, http.StatusOK, OperatorAddResult{
		Operator:    rec,
		Certificate: string(pemCert(cert)),
		OperatorCA:  string(pemCert(ops.CA.Root())),
		ServerCA:    string(roots),
	})
}

func (h *handler) removeOperator(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := operator.CheckName(name); err != nil {
		h.bad(w, err.Error())
		return
	}
	reason := r.URL.Query().Get("reason")
	if len(reason) > 1024 {
		h.bad(w, "reason: at most 1024 bytes")
		return
	}
	who := actor(r)
	rm, err := operator.Remove(r.Context(), h.b.Store, name, who, reason, h.b.Clock())
	if err != nil {
		h.operatorFail(w, err)
		return
	}
	h.b.Logger.Warn("operator removed", slog.String("name", rm.Name), slog.String("serial", rm.Serial), slog.String("by", who))
	writeJSON(w, http.StatusOK, rm)
}

func (h *handler) operatorFail(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, operator.ErrExists), errors.Is(err, operator.ErrRemoved):
		writeJSON(w, http.StatusConflict, Error{Error: err.Error()})
	case errors.Is(err, operator.ErrUnknown):
		writeJSON(w, http.StatusNotFound, Error{Error: err.Error()})
	case errors.Is(err, operator.ErrName), errors.Is(err, operator.ErrRole), errors.Is(err, operator.ErrKey), errors.Is(err, operator.ErrLifetime):
		h.bad(w, err.Error())
	default:
		h.fail(w, err)
	}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
