package broker

import (
	"fmt"
	"regexp"
	"strings"
)

// DeviceURNPrefix starts every device identifier (see package device); the
// Mosquitto ACL rebuilds an IDevID holder's URN from it.
const DeviceURNPrefix = "urn:dev:embark:"

// MosquittoOptions describe a Mosquitto 2.0 deployment for Embark. Paths
// are written into the configuration as given.
type MosquittoOptions struct {
	// Bind is the address both listeners bind to; empty means all
	// interfaces.
	Bind string
	// DevicePort is the TLS listener for devices, ServicePort the one for
	// Embark's service client.
	DevicePort, ServicePort int
	// CertFile and KeyFile are the broker's server certificate and key.
	CertFile, KeyFile string
	// DeviceCAFile is a PEM bundle of the trusted manufacturer roots (for
	// IDevIDs) and Embark's root (for LDevIDs).
	DeviceCAFile string
	// ServiceCAFile holds only the service CA (see LoadOrCreateService).
	ServiceCAFile string
	// ACLFile and ServiceACLFile are where the caller writes the two ACLs
	// that MosquittoConfig and MosquittoServiceACL return.
	ACLFile, ServiceACLFile string
	// ServiceName is the common name of Embark's service certificate.
	ServiceName string
	// Manufacturers are the names of the trusted manufacturers: each gets
	// IDevID patterns in the device ACL.
	Manufacturers []string
	// RunAsRoot adds "user root": Mosquitto started as root otherwise
	// drops to the "mosquitto" user and may not read the key files.
	RunAsRoot bool
	// MaxPacketSize is announced to v5 clients and enforced (default
	// DefaultMaxPacketSize).
	MaxPacketSize uint32
}

var (
	mosqNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)
	mosqPathRE = regexp.MustCompile(`^[^\s#]+$`)
)

// Validate checks the options. MosquittoConfig leaves out whatever fails
// these checks rather than write it into a configuration, so call Validate
// first.
func (o MosquittoOptions) Validate() error {
	var errs []string
	if o.Bind != "" && !mosqPathRE.MatchString(o.Bind) {
		errs = append(errs, fmt.Sprintf("bind address %q", o.Bind))
	}
	for _, p := range []struct {
		name string
		port int
	}{{"device port", o.DevicePort}, {"service port", o.ServicePort}} {
		if p.port <= 0 || p.port > 65535 {
			errs = append(errs, fmt.Sprintf("%s %d", p.name, p.port))
		}
	}
	if o.DevicePort == o.ServicePort {
		errs = append(errs, "device and service ports are equal")
	}
	for _, p := range []struct{ name, path string }{
		{"CertFile", o.CertFile}, {"KeyFile", o.KeyFile}, {"DeviceCAFile", o.DeviceCAFile},
		{"ServiceCAFile", o.ServiceCAFile}, {"ACLFile", o.ACLFile}, {"ServiceACLFile", o.ServiceACLFile},
	} {
		if !mosqPathRE.MatchString(p.path) {
			errs = append(errs, fmt.Sprintf("%s %q (empty or with white space or '#')", p.name, p.path))
		}
	}
	if o.ACLFile == o.ServiceACLFile {
		errs = append(errs, "ACLFile and ServiceACLFile are the same file")
	}
	if !mosqNameRE.MatchString(o.ServiceName) {
		errs = append(errs, fmt.Sprintf("service name %q", o.ServiceName))
	}
	for _, m := range o.Manufacturers {
		if !mosqNameRE.MatchString(m) {
			errs = append(errs, fmt.Sprintf("manufacturer name %q", m))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: mosquitto: %s", ErrInvalidConfig, strings.Join(errs, "; "))
	}
	return nil
}

// MosquittoConfig returns a mosquitto.conf for Embark and the ACL of its
// device listener (to be written to opts.ACLFile). The service listener's
// ACL comes from MosquittoServiceACL: it must be a separate file, because
// Mosquitto ACL entries match user names, and a certificate presented on
// the device listener, issued by a trusted manufacturer, could carry the
// service's name as its CN.
//
// The configuration has per_listener_settings true and two TLS listeners
// (TLS 1.2 minimum), both requiring a client certificate and taking the
// user name from its CN (use_identity_as_username). The device listener
// trusts opts.DeviceCAFile and also replaces each client identifier with
// the user name (use_username_as_clientid), so that no device can take over
// another's session. The service listener trusts only opts.ServiceCAFile.
func MosquittoConfig(opts MosquittoOptions) (conf, acl string) {
	var c strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&c, format+"\n", args...) }
	path := func(key, p string) {
		if mosqPathRE.MatchString(p) {
			line("%s %s", key, p)
		}
	}
	maxPacket := opts.MaxPacketSize
	if maxPacket == 0 {
		maxPacket = DefaultMaxPacketSize
	}
	line("# Mosquitto 2.0 configuration for Embark (generated).")
	line("per_listener_settings true")
	if opts.RunAsRoot {
		line("user root")
	}
	line("persistence false")
	line("max_packet_size %d", maxPacket)
	line("log_dest stderr")
	line("log_type error")
	line("log_type warning")
	line("log_type notice")
	line("log_type information")
	line("connection_messages true")

	listener := func(port int, caFile, aclFile, comment string, clientIDFromCert bool) {
		line("")
		line("# %s", comment)
		if opts.Bind != "" && mosqPathRE.MatchString(opts.Bind) {
			line("listener %d %s", port, opts.Bind)
		} else {
			line("listener %d", port)
		}
		line("protocol mqtt")
		line("allow_anonymous false")
		path("cafile", caFile)
		path("certfile", opts.CertFile)
		path("keyfile", opts.KeyFile)
		line("tls_version tlsv1.2")
		line("require_certificate true")
		line("use_identity_as_username true")
		if clientIDFromCert {
			line("use_username_as_clientid true")
		}
		path("acl_file", aclFile)
	}
	listener(opts.DevicePort, opts.DeviceCAFile, opts.ACLFile,
		"Devices: IDevIDs (manufacturer roots) and LDevIDs (Embark root).", true)
	listener(opts.ServicePort, opts.ServiceCAFile, opts.ServiceACLFile,
		"Embark's service client only.", false)
	return c.String(), deviceACL(opts.Manufacturers)
}

// deviceACL returns the device listener's ACL.
func deviceACL(manufacturers []string) string {
	var a strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&a, format+"\n", args...) }
	line("# Embark device ACL (generated). Mosquitto substitutes %%u with the user")
	line("# name, which is the certificate's CN.")
	line("")
	line("# LDevIDs: the CN is the device URN.")
	ns := TopicRoot + "/%u/"
	line("pattern write %s%s", ns, TopicNonce)
	line("pattern write %s%s", ns, TopicRenew)
	line("pattern write %s%s", ns, TopicState)
	line("pattern read %s%s", ns, TopicResp)
	line("pattern read %s%s/#", ns, TopicResp)
	line("pattern read %s%s", ns, TopicCmd)
	for _, m := range manufacturers {
		if !mosqNameRE.MatchString(m) {
			continue
		}
		line("")
		line("# IDevIDs of %s: the CN is the serial number.", m)
		ns := TopicRoot + "/" + DeviceURNPrefix + m + ":%u/"
		line("pattern write %s%s", ns, TopicNonce)
		line("pattern write %s%s", ns, TopicEnroll)
		line("pattern write %s%s", ns, TopicVoucher)
		line("pattern read %s%s", ns, TopicResp)
		line("pattern read %s%s/#", ns, TopicResp)
	}
	return a.String()
}

// MosquittoServiceACL returns the service listener's ACL (to be written to
// opts.ServiceACLFile): the service may read and write everything under
// embark/v1/.
func MosquittoServiceACL(opts MosquittoOptions) string {
	var a strings.Builder
	a.WriteString("# Embark service ACL (generated).\n")
	if mosqNameRE.MatchString(opts.ServiceName) {
		fmt.Fprintf(&a, "user %s\ntopic readwrite %s/#\n", opts.ServiceName, TopicRoot)
	}
	return a.String()
}
