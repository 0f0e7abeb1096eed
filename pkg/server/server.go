package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/config"
	"github.com/embark-iot/embark/pkg/crl"
	"github.com/embark-iot/embark/pkg/desired"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/estcoap"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/operator"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/registrar"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
	"github.com/embark-iot/embark/pki"
	"github.com/embark-iot/embark/policy"
)

// Version is Embark's version, set at build time with -ldflags.
var Version = "dev"

// Paths inside the data directory.
const (
	CADir        = "ca"
	RegistryFile = "registry.db"
)

// Init prepares a data directory: the directory (0700), a default
// configuration file if there is none, and the CA. It is idempotent and
// never overwrites keys or an existing configuration.
func Init(dataDir string) (config.Config, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return config.Config{}, fmt.Errorf("init: %w", err)
	}
	cfg, err := config.Load(dataDir)
	if errors.Is(err, os.ErrNotExist) {
		cfg = config.DefaultConfig(dataDir)
		if err := config.Write(cfg); err != nil {
			return cfg, fmt.Errorf("init: %w", err)
		}
	} else if err != nil {
		return cfg, err
	}
	if _, err := pki.Init(filepath.Join(dataDir, CADir), caOptions(cfg, nil)...); err != nil {
		return cfg, fmt.Errorf("init: %w", err)
	}
	if _, err := owner.Init(dataDir, cfg.Owner); err != nil {
		return cfg, fmt.Errorf("init: %w", err)
	}
	if _, err := audit.InitKey(dataDir); err != nil {
		return cfg, fmt.Errorf("init: %w", err)
	}
	if _, err := operator.Init(filepath.Join(dataDir, OperatorsDir)); err != nil {
		return cfg, fmt.Errorf("init: %w", err)
	}
	return cfg, nil
}

func caOptions(cfg config.Config, log *slog.Logger) []pki.Option {
	var opts []pki.Option
	if log != nil {
		opts = append(opts, pki.WithLogger(log))
	}
	return opts
}

// Server is a running (or ready to run) Embark.
type Server struct {
	cfg   config.Config
	log   *slog.Logger
	clock func() time.Time

	store   *bolt.DB
	ca      *pki.CA
	owner   *owner.Identity
	decider *onboard.PolicyDecider
	crl     *crl.Publisher
	// policyHash is the hash of the policy file content last seen
	// (activated or refused), so that each change is handled once.
	policyHash string
	core       *onboard.Service
	coap       *estcoap.Server
	mqtt       *mqttParts
	desired    *desired.Store
	https      *httpsParts
	admin      http.Handler
	own        caParts // what a CA rollover moves (ca.go)
	registrar  *registrar.Registrar

	mu       sync.Mutex
	udpAddr  net.Addr
	tcpAddr  net.Addr
	adminSrv *http.Server
	adminLn  net.Listener
	started  time.Time
	// brskiAddr is the plain CoAP voucher listener (registrar.go), under mu.
	brskiAddr net.Addr

	// reassess carries causes to the background re-evaluation.
	reassess    chan string
	reassessAll chan string
	stopBg      context.CancelFunc
	bg          sync.WaitGroup
}

// Option configures a Server.
type Option func(*Server) error

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) error { s.log = l; return nil } }

// WithClock sets the clock of the core and the CA.
func WithClock(now func() time.Time) Option {
	return func(s *Server) error { s.clock = now; return nil }
}

// New opens the data directory of cfg (initialising it if needed) and builds
// the server. Nothing listens until Start.
func New(ctx context.Context, cfg config.Config, opts ...Option) (*Server, error) {
	s := &Server{cfg: cfg, log: slog.New(slog.DiscardHandler), clock: time.Now}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	caOpts := append(caOptions(cfg, s.log), pki.WithClock(s.clock))
	if cfg.CATemplate != "" {
		text, err := os.ReadFile(cfg.CATemplate)
		if err != nil {
			return nil, fmt.Errorf("server: ca_template: %w", err)
		}
		caOpts = append(caOpts, pki.WithTemplate(string(text)))
	}
	ca, err := pki.Init(filepath.Join(cfg.DataDir, CADir), caOpts...)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.ca = ca
	s.owner, err = owner.Init(cfg.DataDir, cfg.Owner)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	db, err := bolt.Open(filepath.Join(cfg.DataDir, RegistryFile), bolt.WithLogger(s.log))
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.store = db
	s.crl, err = crl.New(db, ca, crl.WithClock(s.clock), crl.WithLogger(s.log))
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	e := cfg.Enrollment
	s.decider = onboard.NewPolicyDecider(onboard.StaticDecider{Zone: e.Zone, Lifetime: time.Duration(e.LDevIDLifetime)})
	if path := cfg.PolicyPath(); path != "" {
		if _, err := os.Stat(path); err == nil {
			p, err := policy.Load(path)
			if err != nil {
				db.Close()
				return nil, fmt.Errorf("server: %w", err)
			}
			s.decider.Set(p)
			s.policyHash = p.Hash()
			s.log.Info("policy loaded", slog.String("file", path), slog.String("policy", onboard.PolicyVersion(p)))
		}
	}
	core, err := onboard.New(ctx, db, ca,
		onboard.WithClock(s.clock),
		onboard.WithLogger(s.log),
		onboard.WithDecider(s.decider),
		onboard.WithAllowExpiredIDevID(e.AllowExpiredIDevID),
		onboard.WithMaxInFlight(e.MaxInFlight, time.Duration(e.RetryAfter)),
		onboard.WithHoldRetry(time.Duration(e.HoldRetry)),
		onboard.WithOwner(s.owner),
		onboard.WithRevocationHook(onboard.RevocationHook{
			Record: func(tx store.Tx, c device.Certificate, at time.Time, reason int) error {
				return crl.RecordRevocation(tx, c.Serial, c.NotAfter, at, reason)
			},
			Committed: s.revoked,
		}),
	)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.core = core
	srvCert, err := s.issueServerCertificate()
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.buildRegistrar(srvCert); err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.desired = desired.New(db, s.clock)
	s.coap, err = estcoap.New(estcoap.Config{
		Core:             core,
		CACerts:          ca.CACerts,
		Certificate:      srvCert,
		GetCertificate:   s.currentServerCertificate,
		MaxBody:          cfg.CoAP.MaxBody,
		HandshakeTimeout: time.Duration(cfg.CoAP.HandshakeTimeout),
		Logger:           s.log,
		CertStatus:       core.CertUsable,
		CRL:              s.crl.Current,
		CRLOf:            s.crl.CurrentFor,
		Desired:          s.desired,
		Registrar:        s.voucherRegistrar(),
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.buildMQTT(ctx, srvCert); err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	if err := s.buildHTTPS(srvCert); err != nil {
		db.Close()
		return nil, fmt.Errorf("server: %w", err)
	}
	s.admin = admin.Handler(admin.Backend{
		Store:        db,
		TrustChanged: core.ReloadTrust,
		Status:       s.status,
		Clock:        s.clock,
		Logger:       s.log,
		Owner:        s.owner,
		Core:         core,
		DataChanged:  s.dataChanged,
		Policy:       s.decider.Current,
		CRL:          s.crl.Current,
		Commands:     commander{s},
		Operators:    s.adminOperators(),
		CA:           caAdmin{s},
		Registrar:    s.adminRegistrar(),
	})
	return s, nil
}

// Start opens the listeners.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.CoAP.UDP != "" {
		a, err := s.coap.ListenDTLS(s.cfg.CoAP.UDP)
		if err != nil {
			return err
		}
		s.udpAddr = a
		s.log.Info("listening", slog.String("proto", "coaps (CoAP over DTLS)"), slog.String("addr", a.String()))
	}
	if s.cfg.CoAP.TCP != "" {
		a, err := s.coap.ListenTLS(s.cfg.CoAP.TCP)
		if err != nil {
			return err
		}
		s.tcpAddr = a
		s.log.Info("listening", slog.String("proto", "coaps+tcp (CoAP over TLS)"), slog.String("addr", a.String()))
	}
	if err := s.listenBRSKI(); err != nil {
		return err
	}
	if err := s.startMQTT(); err != nil {
		return err
	}
	if err := s.listenAdmin(); err != nil {
		return err
	}
	if err := s.startHTTPS(); err != nil {
		return err
	}
	s.started = s.clock()
	s.startBackground()
	return nil
}

// startBackground starts the re-evaluation worker: data changes are
// coalesced, and the flagged devices decided again, one pass at a time.
func (s *Server) startBackground() {
	ctx, cancel := context.WithCancel(context.Background())
	s.stopBg = cancel
	s.reassess = make(chan string, 1)
	s.reassessAll = make(chan string, 1)
	s.bg.Add(3)
	go func() {
		defer s.bg.Done()
		s.watchPolicy(ctx, 2*time.Second)
	}()
	go func() {
		defer s.bg.Done()
		s.crl.Run(ctx)
	}()
	s.startAuditCheckpoints(ctx)
	s.runCampaigns(ctx)
	go func() {
		defer s.bg.Done()
		for {
			var cause string
			var all bool
			select {
			case <-ctx.Done():
				return
			case cause = <-s.reassess:
			case cause = <-s.reassessAll:
				all = true
			}
			{
				res, err := s.core.Reevaluate(ctx, all, cause)
				if err != nil {
					s.log.Error("re-evaluation", slog.String("cause", cause), slog.Any("err", err))
					continue
				}
				s.log.Info("re-evaluation done", slog.String("cause", cause), slog.Int("evaluated", res.Evaluated),
					slog.Int("changed", res.Changed), slog.Int("tightened", res.Tightened))
				s.followMoved(ctx, res.Moved)
			}
		}
	}()
}

// dataChanged asks for a re-evaluation of the flagged devices: in the
// background while the server runs, at once for a CLI that opened the data
// directory itself.
func (s *Server) dataChanged(cause string) {
	s.mu.Lock()
	ch := s.reassess
	s.mu.Unlock()
	if ch == nil {
		if _, err := s.core.Reevaluate(context.Background(), false, cause); err != nil {
			s.log.Error("re-evaluation", slog.String("cause", cause), slog.Any("err", err))
		}
		return
	}
	select {
	case ch <- cause:
	default: // a pass is already queued; it will see this change too
	}
}

func (s *Server) listenAdmin() error {
	path := s.cfg.SocketPath()
	// A socket left by a killed server: remove it only if nobody answers.
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return fmt.Errorf("server: admin socket %s: a file that is not a socket is in the way; refusing to remove it", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return fmt.Errorf("server: admin socket %s: another Embark is running on this data directory", path)
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("server: remove stale admin socket: %w", err)
		}
	}
	old := umask(0o177)
	ln, err := net.Listen("unix", path)
	umask(old)
	if err != nil {
		return fmt.Errorf("server: admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("server: admin socket: %w", err)
	}
	s.adminLn = ln
	// The socket also serves Go's profiler: it is reachable only by the
	// data directory's owner (0600), like the rest of the admin API.
	mux := http.NewServeMux()
	mux.Handle("/", s.admin)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.adminSrv = srv
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("admin socket", slog.Any("err", err))
		}
	}()
	s.log.Info("listening", slog.String("proto", "admin (unix socket)"), slog.String("addr", path))
	return nil
}

// Run starts the server and serves until ctx is done.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Start(ctx); err != nil {
		s.Close()
		return err
	}
	<-ctx.Done()
	s.log.Info("shutting down")
	return s.Close()
}

// Close stops the listeners and closes the registry. Requests in progress
// finish first: what was acknowledged is committed.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if s.stopBg != nil {
		s.stopBg()
		s.mu.Unlock()
		s.bg.Wait()
		s.mu.Lock()
		s.stopBg = nil
	}
	if s.adminSrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, s.adminSrv.Shutdown(ctx))
		cancel()
		s.adminSrv = nil
	}
	if s.coap != nil {
		errs = append(errs, s.coap.Close())
	}
	s.mu.Unlock()
	errs = append(errs, s.closeMQTT())
	errs = append(errs, s.closeHTTPS())
	s.closeRegistrar()
	s.mu.Lock()
	if s.store != nil {
		errs = append(errs, s.store.Close())
		s.store = nil
	}
	return errors.Join(errs...)
}

// UDPAddr and TCPAddr return the bound CoAP listener addresses (nil if disabled).
func (s *Server) UDPAddr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.udpAddr }

// TCPAddr returns the bound CoAP-over-TLS address.
func (s *Server) TCPAddr() net.Addr { s.mu.Lock(); defer s.mu.Unlock(); return s.tcpAddr }

// CA returns the server's CA.
func (s *Server) CA() *pki.CA { return s.ca }

// revoked drops the live sessions of revoked certificates.
func (s *Server) revoked(serials []string) {
	s.crl.Trigger()
	s.followRevoked(serials)
	if s.coap == nil {
		return
	}
	if n := s.coap.Disconnect(serials...); n > 0 {
		s.log.Info("dropped sessions of revoked certificates", slog.Int("sessions", n), slog.Int("certificates", len(serials)))
	}
}

// Owner returns the operator's owner identity.
func (s *Server) Owner() *owner.Identity { return s.owner }

// Store returns the registry.
func (s *Server) Store() *bolt.DB { return s.store }

// AdminHandler returns the admin API handler.
func (s *Server) AdminHandler() http.Handler { return s.admin }

func (s *Server) status() map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]any{"version": Version, "data_dir": s.cfg.DataDir}
	if !s.started.IsZero() {
		out["started"] = s.started.UTC().Format(time.RFC3339)
	}
	l := map[string]string{}
	if s.udpAddr != nil {
		l["coaps"] = s.udpAddr.String()
	}
	if s.tcpAddr != nil {
		l["coaps+tcp"] = s.tcpAddr.String()
	}
	if s.brskiAddr != nil {
		l["coap"] = s.brskiAddr.String() // plain CoAP: /.well-known/brski/rv only
	}
	if s.adminLn != nil {
		l["admin"] = s.adminLn.Addr().String()
	}
	if s.mqtt != nil && s.mqtt.url != nil {
		if s.mqtt.broker != nil {
			l["mqtts"] = s.mqtt.url.Host
			out["mqtt_clients"] = s.mqtt.broker.Clients()
		} else {
			out["mqtt_broker"] = s.mqtt.url.Redacted()
		}
	}
	s.httpsStatus(out, l)
	s.registrarStatus(out)
	out["listeners"] = l
	out["ca_root"] = s.ca.Root().Subject.String()
	return out
}

// OpenOffline opens a data directory without listeners, for CLI commands
// run while no server is up. The caller must Close it.
func OpenOffline(ctx context.Context, cfg config.Config, opts ...Option) (*Server, error) {
	return New(ctx, cfg, opts...)
}

// watchPolicy re-reads the policy file when it changes: a valid policy is
// activated (an audit event) and every device re-evaluated against it; a
// broken one is refused, logged and audited, and the running policy stays.
func (s *Server) watchPolicy(ctx context.Context, every time.Duration) {
	path := s.cfg.PolicyPath()
	if path == "" {
		return
	}
	var lastMod time.Time
	var lastSize int64 = -1
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := os.Stat(path)
		if err != nil || (st.ModTime().Equal(lastMod) && st.Size() == lastSize) {
			continue
		}
		lastMod, lastSize = st.ModTime(), st.Size()
		s.reloadPolicy(ctx, path)
	}
}

// reloadPolicy checks and activates the policy at path if its content changed.
func (s *Server) reloadPolicy(ctx context.Context, path string) {
	src, err := os.ReadFile(path)
	if err != nil {
		s.log.Error("policy", slog.String("file", path), slog.Any("err", err))
		return
	}
	sum := sha256.Sum256(src)
	hash := hex.EncodeToString(sum[:])
	s.mu.Lock()
	same := hash == s.policyHash
	s.policyHash = hash
	s.mu.Unlock()
	if same {
		return
	}
	p, err := policy.Parse(path, src)
	if err != nil {
		s.log.Error("policy refused; the running policy stays", slog.String("file", path), slog.Any("err", err))
		if aerr := s.core.RecordPolicy(ctx, "refused", err.Error(), ""); aerr != nil {
			s.log.Error("audit", slog.Any("err", aerr))
		}
		return
	}
	s.decider.Set(p)
	v := onboard.PolicyVersion(p)
	s.log.Info("policy activated", slog.String("file", path), slog.String("policy", v))
	if err := s.core.RecordPolicy(ctx, "activated", "policy "+p.Name()+" from "+path+" sha256:"+p.Hash(), v); err != nil {
		s.log.Error("audit", slog.Any("err", err))
	}
	select {
	case s.reassessAll <- "policy " + v + " activated":
	default:
	}
}
