package config

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// FileName is the name of the configuration file in the data directory.
const FileName = "embark.json"

// Duration is a time.Duration written as a Go duration string ("720h").
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: want a string like \"720h\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

// Config is Embark's configuration.
type Config struct {
	// DataDir holds the CA, the registry, the admin socket and this file.
	// It is not written to the file: the file lives in it.
	DataDir string `json:"-"`

	CoAP  CoAP  `json:"coap"`
	MQTT  MQTT  `json:"mqtt"`
	HTTPS HTTPS `json:"https"`
	// ServerNames are the DNS names and IP addresses in the server
	// certificate that devices verify.
	ServerNames []string `json:"server_names"`
	// AdminSocket is the path of the local admin socket, relative to DataDir.
	AdminSocket string `json:"admin_socket"`

	// Owner is the owner name manufacturers write into the manifests of
	// devices sold to this operator. Devices sold to another owner are
	// refused. The owner's key is DataDir/owner.key.
	Owner string `json:"owner"`

	Enrollment Enrollment `json:"enrollment"`
	// LogLevel: debug, info, warn, error.
	LogLevel string `json:"log_level"`
	// Policy is the onboarding policy file (package policy), relative to
	// DataDir. While it does not exist, the built-in decision applies. It is
	// re-read when it changes; a broken file is refused and the running
	// policy stays.
	Policy string `json:"policy"`
	// CATemplate optionally names an x509util template file for LDevIDs.
	CATemplate string `json:"ca_template,omitempty"`
}

// CoAP configures the EST-coaps listeners. An empty address disables one.
type CoAP struct {
	UDP string `json:"udp"`
	TCP string `json:"tcp"`
	// BRSKI is the plain CoAP (UDP, no DTLS) listener that serves only
	// /.well-known/brski/rv, for devices that cannot verify Embark before
	// their voucher; empty disables it.
	BRSKI string `json:"brski"`
	// MaxBody caps a request body, whole or reassembled from blocks.
	MaxBody int `json:"max_body"`
	// HandshakeTimeout bounds one DTLS/TLS handshake.
	HandshakeTimeout Duration `json:"handshake_timeout"`
}

// MQTT configures the MQTT v5 transport. By default Embark runs an embedded
// broker on Listen and connects to it; with Broker set it connects to that
// external broker instead (and runs none).
type MQTT struct {
	// Listen is the embedded broker's TLS address; empty disables it.
	Listen string `json:"listen"`
	// Broker is an external broker's URL, mqtts://host:port.
	Broker string `json:"broker,omitempty"`
	// BrokerCA is a PEM file with the roots of the external broker's
	// server certificate (relative to DataDir); default: Embark's root.
	BrokerCA string `json:"broker_ca,omitempty"`
	// ClientID is Embark's client id and service name at the broker.
	ClientID string `json:"client_id"`
	// NonceTTL is how long a nonce issued to a device stays valid.
	NonceTTL Duration `json:"nonce_ttl"`
	// MaxClients bounds the devices connected to the embedded broker.
	MaxClients int `json:"max_clients"`
}

// Enabled reports whether the MQTT transport runs.
func (m MQTT) Enabled() bool { return m.Listen != "" || m.Broker != "" }

// HTTPS configures the HTTPS admin API: the admin API's JSON over TLS,
// for operators holding a certificate of the operator CA. Back-end links
// use TLS 1.3 with the hybrid post-quantum key exchange X25519MLKEM768
// only; a configuration that would weaken that is refused unless
// AllowClassical is set.
type HTTPS struct {
	// Listen is the TCP address; empty disables the HTTPS admin API.
	Listen string `json:"listen"`
	// MinVersion is the lowest TLS version accepted: "1.3". "1.2" is a
	// weakening that needs AllowClassical.
	MinVersion string `json:"min_version"`
	// Groups are the key exchanges accepted. They must include
	// "X25519MLKEM768"; the classical "X25519", "P256" and "P384" are a
	// weakening that needs AllowClassical.
	Groups []string `json:"groups"`
	// AllowClassical is the compatibility flag for clients that cannot
	// speak X25519MLKEM768: it permits classical groups (X25519 is added
	// when Groups names none) and TLS 1.2 if MinVersion asks for it. The
	// hybrid group stays preferred. It is logged as a warning at start and
	// shown in `embark status`. Default false.
	AllowClassical bool `json:"allow_classical"`
}

// Key exchange names of HTTPS.Groups.
const (
	GroupHybrid = "X25519MLKEM768"
)

var (
	hybridGroups    = map[string]tls.CurveID{GroupHybrid: tls.X25519MLKEM768}
	classicalGroups = map[string]tls.CurveID{"X25519": tls.X25519, "P256": tls.CurveP256, "P384": tls.CurveP384}
)

// TLSGroups returns the key exchanges of a valid h, in the order given,
// with X25519 added if AllowClassical is set and Groups names no classical
// group.
func (h HTTPS) TLSGroups() []tls.CurveID {
	var out []tls.CurveID
	classical := false
	for _, g := range h.Groups {
		if id, ok := hybridGroups[g]; ok {
			out = append(out, id)
		} else if id, ok := classicalGroups[g]; ok && h.AllowClassical {
			out = append(out, id)
			classical = true
		}
	}
	if h.AllowClassical && !classical {
		out = append(out, tls.X25519)
	}
	return out
}

// TLSMinVersion returns the lowest TLS version of a valid h.
func (h HTTPS) TLSMinVersion() uint16 {
	if h.MinVersion == "1.2" && h.AllowClassical {
		return tls.VersionTLS12
	}
	return tls.VersionTLS13
}

func (h HTTPS) validate(bad func(string, ...any)) {
	if h.Listen == "" {
		return
	}
	if _, _, err := net.SplitHostPort(h.Listen); err != nil {
		bad("https.listen: %q: %v", h.Listen, err)
	}
	const flag = "back-end links use TLS 1.3 with X25519MLKEM768 only; set https.allow_classical: true to accept it for compatibility"
	switch h.MinVersion {
	case "1.3":
	case "1.2":
		if !h.AllowClassical {
			bad("https.min_version: %q would weaken the admin API (%s)", h.MinVersion, flag)
		}
	default:
		bad("https.min_version: %q: want \"1.3\" (or \"1.2\" with https.allow_classical)", h.MinVersion)
	}
	hybrid := false
	for _, g := range h.Groups {
		if _, ok := hybridGroups[g]; ok {
			hybrid = true
		} else if _, ok := classicalGroups[g]; ok {
			if !h.AllowClassical {
				bad("https.groups: %q is a classical key exchange that would weaken the admin API (%s)", g, flag)
			}
		} else {
			bad("https.groups: %q: unknown (want X25519MLKEM768; X25519, P256, P384 with https.allow_classical)", g)
		}
	}
	if !hybrid {
		bad("https.groups: must include %q (the hybrid post-quantum key exchange)", GroupHybrid)
	}
}

// Enrollment configures the onboarding core.
type Enrollment struct {
	// Zone and LDevIDLifetime apply while no policy is loaded.
	Zone           string   `json:"zone"`
	LDevIDLifetime Duration `json:"ldevid_lifetime"`
	// AllowExpiredIDevID passes expired IDevID chains to policy as a fact
	// instead of refusing them (802.1AR "no expiry" IDevIDs are never expired).
	AllowExpiredIDevID bool `json:"allow_expired_idevid"`
	// MaxInFlight bounds requests processed at once; beyond it devices are
	// told to retry after RetryAfter.
	MaxInFlight int      `json:"max_in_flight"`
	RetryAfter  Duration `json:"retry_after"`
	// HoldRetry is the Max-Age given to held devices.
	HoldRetry Duration `json:"hold_retry"`
}

// DefaultConfig returns a fresh configuration that works out of the box.
func DefaultConfig(dataDir string) Config {
	return Config{
		DataDir:     dataDir,
		CoAP:        CoAP{UDP: "127.0.0.1:5684", TCP: "127.0.0.1:5684", BRSKI: "127.0.0.1:5683", MaxBody: 8 << 10, HandshakeTimeout: Duration(10 * time.Second)},
		MQTT:        MQTT{Listen: "127.0.0.1:8883", ClientID: "embark", NonceTTL: Duration(5 * time.Minute), MaxClients: 50000},
		HTTPS:       HTTPS{Listen: "127.0.0.1:8443", MinVersion: "1.3", Groups: []string{GroupHybrid}},
		ServerNames: []string{"localhost", "127.0.0.1", "::1"},
		AdminSocket: "admin.sock",
		Owner:       "example-operator",
		Policy:      "policy.yaml",
		Enrollment: Enrollment{
			Zone:           "default",
			LDevIDLifetime: Duration(30 * 24 * time.Hour),
			MaxInFlight:    1024,
			RetryAfter:     Duration(2 * time.Second),
			HoldRetry:      Duration(60 * time.Second),
		},
		LogLevel: "info",
	}
}

// Validate reports every problem of c at once.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.DataDir == "" {
		bad("data directory not set")
	}
	if c.CoAP.UDP == "" && c.CoAP.TCP == "" {
		bad("coap: no listener (udp and tcp both empty)")
	}
	for name, a := range map[string]string{"coap.udp": c.CoAP.UDP, "coap.tcp": c.CoAP.TCP, "coap.brski": c.CoAP.BRSKI} {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			bad("%s: %q: %v", name, a, err)
		}
	}
	if c.CoAP.MaxBody < 512 || c.CoAP.MaxBody > 1<<20 {
		bad("coap.max_body: %d not in [512, 1048576]", c.CoAP.MaxBody)
	}
	if c.CoAP.HandshakeTimeout <= 0 {
		bad("coap.handshake_timeout must be positive")
	}
	if m := c.MQTT; m.Enabled() {
		if m.Listen != "" && m.Broker != "" {
			bad("mqtt: listen (embedded broker) and broker (external) are exclusive; empty one of them")
		}
		if m.Listen != "" {
			if _, _, err := net.SplitHostPort(m.Listen); err != nil {
				bad("mqtt.listen: %q: %v", m.Listen, err)
			}
		}
		if m.Broker != "" {
			u, err := url.Parse(m.Broker)
			if err != nil || u.Scheme != "mqtts" || u.Port() == "" {
				bad("mqtt.broker: %q: want mqtts://host:port (TLS is required)", m.Broker)
			}
		}
		if m.ClientID == "" || strings.ContainsAny(m.ClientID, "/+#") {
			bad("mqtt.client_id: %q: want a non-empty name without '/', '+' or '#'", m.ClientID)
		}
		if time.Duration(m.NonceTTL) < 10*time.Second || time.Duration(m.NonceTTL) > 24*time.Hour {
			bad("mqtt.nonce_ttl: %s not in [10s, 24h]", time.Duration(m.NonceTTL))
		}
		if m.MaxClients < 1 {
			bad("mqtt.max_clients: must be at least 1")
		}
	}
	c.HTTPS.validate(bad)
	if len(c.ServerNames) == 0 {
		bad("server_names: at least one name or address")
	}
	if c.AdminSocket == "" {
		bad("admin_socket: empty")
	}
	if c.Owner == "" || len(c.Owner) > 256 {
		bad("owner: want a name of 1 to 256 bytes")
	}
	e := c.Enrollment
	if e.Zone == "" {
		bad("enrollment.zone: empty")
	}
	if time.Duration(e.LDevIDLifetime) < time.Hour {
		bad("enrollment.ldevid_lifetime: %s is shorter than 1h", time.Duration(e.LDevIDLifetime))
	}
	if e.MaxInFlight < 1 {
		bad("enrollment.max_in_flight: must be at least 1")
	}
	if e.RetryAfter < Duration(time.Second) || e.HoldRetry < Duration(time.Second) {
		bad("enrollment.retry_after and hold_retry: at least 1s (CoAP Max-Age counts seconds)")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level: %q (debug, info, warn, error)", c.LogLevel)
	}
	return errors.Join(errs...)
}

// Path returns the configuration file path in dataDir.
func Path(dataDir string) string { return filepath.Join(dataDir, FileName) }

// PolicyPath returns the policy file path.
func (c *Config) PolicyPath() string {
	if c.Policy == "" || filepath.IsAbs(c.Policy) {
		return c.Policy
	}
	return filepath.Join(c.DataDir, c.Policy)
}

// SocketPath returns the admin socket path.
func (c *Config) SocketPath() string {
	if filepath.IsAbs(c.AdminSocket) {
		return c.AdminSocket
	}
	return filepath.Join(c.DataDir, c.AdminSocket)
}

// Load reads the configuration of dataDir. Fields missing from the file keep
// their defaults; unknown fields are refused.
func Load(dataDir string) (Config, error) {
	c := DefaultConfig(dataDir)
	f, err := os.Open(Path(dataDir))
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("config: %s: %w", Path(dataDir), err)
	}
	c.DataDir = dataDir
	if err := c.Validate(); err != nil {
		return c, fmt.Errorf("config: %s: %w", Path(dataDir), err)
	}
	return c, nil
}

// Write writes c to its data directory (0600), replacing the file atomically.
func Write(c Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tmp := Path(c.DataDir) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := os.Rename(tmp, Path(c.DataDir)); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}
