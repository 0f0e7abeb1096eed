package masa

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/embark-iot/embark/pkg/voucher"
)

// Headers of every answer: the TLS version and key exchange of the
// connection, as the MASA sees them.
const (
	HeaderTLSVersion = "Embark-TLS-Version"
	HeaderTLSGroup   = "Embark-TLS-Group"
)

// errorBody is the JSON body of a refusal.
type errorBody struct {
	Reason  string `json:"reason"`
	Message string `json:"message"`
}

// TLSConfig is the MASA's TLS configuration: TLS 1.3 with X25519MLKEM768
// only, its certificate, a client certificate requested. Each accepted
// handshake is logged at debug level with the group negotiated.
func (m *MASA) TLSConfig() *tls.Config {
	return voucher.ServerTLSConfig(m.cert, func(cs tls.ConnectionState) {
		who := ""
		if len(cs.PeerCertificates) > 0 {
			who = cs.PeerCertificates[0].Subject.String()
		}
		m.log.Debug("masa: TLS handshake", "tls", voucher.DescribeTLS(cs), "client", who)
	})
}

// Handler serves the MASA's HTTPS API. Requests must come over TLS.
func (m *MASA) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+voucher.PathMASARequestVoucher, m.handleVoucher)
	mux.HandleFunc("POST "+voucher.PathMASARegister, m.handleRegister)
	mux.HandleFunc("GET /.well-known/brski/status", m.handleStatus)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			writeError(w, refusal(http.StatusForbidden, ReasonBadRequest, "the MASA answers only over TLS"))
			return
		}
		if err := voucher.CheckHybrid(*r.TLS); err != nil {
			writeError(w, refusal(http.StatusForbidden, ReasonBadRequest, "%v", err))
			return
		}
		w.Header().Set(HeaderTLSVersion, "TLS1.3")
		w.Header().Set(HeaderTLSGroup, r.TLS.CurveID.String())
		mux.ServeHTTP(w, r)
	})
}

func (m *MASA) handleVoucher(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, voucher.MaxRequest)
	if !ok {
		return
	}
	out, err := m.RequestVoucher(Request{Body: body, TLSChain: r.TLS.PeerCertificates, TLS: voucher.DescribeTLS(*r.TLS), Remote: r.RemoteAddr})
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", voucher.MediaTypeCountersigned)
	_, _ = w.Write(out)
}

func (m *MASA) handleRegister(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, voucher.MaxEnvelope)
	if !ok {
		return
	}
	res, err := m.Register(body, r.TLS.PeerCertificates, voucher.DescribeTLS(*r.TLS))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (m *MASA) handleStatus(w http.ResponseWriter, r *http.Request) {
	st := struct {
		Stats
		TLS string `json:"tls"`
	}{m.Stats(), voucher.DescribeTLS(*r.TLS)}
	writeJSON(w, http.StatusOK, st)
}

func readBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		writeError(w, refusal(http.StatusRequestEntityTooLarge, ReasonBadRequest, "body above %d bytes or unreadable: %v", limit, err))
		return nil, false
	}
	return b, true
}

func writeError(w http.ResponseWriter, err error) {
	var ref *Refusal
	if !errors.As(err, &ref) {
		ref = refusal(http.StatusInternalServerError, ReasonInternal, "%v", err)
	}
	writeJSON(w, ref.Status, errorBody{Reason: string(ref.Reason), Message: ref.Msg})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func isSignature(err error) bool {
	return errors.Is(err, voucher.ErrBadSignature) || errors.Is(err, voucher.ErrUnsupportedKey)
}

func isProximity(err error) bool { return errors.Is(err, voucher.ErrProximity) }

// Listen starts serving HTTPS on addr ("127.0.0.1:0" for any port) and
// returns the bound address.
func (m *MASA) Listen(addr string) (net.Addr, error) {
	tcp, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("masa: listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           m.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Refused handshakes (classical-only or TLS 1.2 clients) are reported here.
		ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelInfo),
	}
	ln := tls.NewListener(tcp, m.TLSConfig())
	m.srvMu.Lock()
	m.srv, m.ln = srv, ln
	m.srvMu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			m.log.Error("masa: serve", "err", err)
		}
	}()
	m.log.Info("masa: listening", "manufacturer", m.mfr.Name, "addr", tcp.Addr().String(), "tls", "TLS1.3 X25519MLKEM768 only")
	return tcp.Addr(), nil
}

// URL returns https://ADDR of the listener, "" before Listen.
func (m *MASA) URL() string {
	m.srvMu.Lock()
	defer m.srvMu.Unlock()
	if m.ln == nil {
		return ""
	}
	return "https://" + m.ln.Addr().String()
}

// Close stops the listener (requests in progress finish) and closes the log.
func (m *MASA) Close() error {
	m.srvMu.Lock()
	srv := m.srv
	m.srv, m.ln = nil, nil
	m.srvMu.Unlock()
	var err error
	if srv != nil {
		// Requests in progress get a few seconds; connections that never
		// sent one (a client's spare) are then closed.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if serr := srv.Shutdown(ctx); serr != nil {
			err = srv.Close()
		}
		cancel()
	}
	return errors.Join(err, m.vlog.close())
}
