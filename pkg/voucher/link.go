package voucher

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"fmt"
	"slices"
)

// HybridGroup is the only key exchange of the registrar ↔ MASA link.
const HybridGroup = tls.X25519MLKEM768

// OIDCmcRA is id-kp-cmcRA (RFC 6402): the extended key usage that makes a
// certificate a registrar's (RFC 8995 §2.4). The MASA accepts requests
// only from certificates carrying it, so that a device's LDevID, which
// chains to the same domain CA, cannot pose as a registrar.
var OIDCmcRA = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 28}

// IsRegistrar reports whether c carries id-kp-cmcRA and clientAuth.
func IsRegistrar(c *x509.Certificate) bool {
	return slices.ContainsFunc(c.UnknownExtKeyUsage, OIDCmcRA.Equal) &&
		slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
}

// CheckHybrid refuses a connection that is not TLS 1.3 with
// X25519MLKEM768, whatever the TLS library negotiated.
func CheckHybrid(cs tls.ConnectionState) error {
	if cs.Version != tls.VersionTLS13 || cs.CurveID != HybridGroup {
		return fmt.Errorf("%w: negotiated %s", ErrClassicalTLS, DescribeTLS(cs))
	}
	return nil
}

// DescribeTLS names a connection's version and key exchange, as in
// "TLS1.3 X25519MLKEM768".
func DescribeTLS(cs tls.ConnectionState) string {
	v := fmt.Sprintf("TLS(0x%04x)", cs.Version)
	switch cs.Version {
	case tls.VersionTLS13:
		v = "TLS1.3"
	case tls.VersionTLS12:
		v = "TLS1.2"
	}
	return v + " " + cs.CurveID.String()
}

// ServerTLSConfig is the MASA's side of the link: TLS 1.3 with
// X25519MLKEM768 only (classical-only and TLS 1.2 clients fail the
// handshake), cert as the server certificate, and a client certificate
// requested. A presented certificate's possession is proven in the
// handshake; whether it is a registered registrar is decided per request,
// against the registrations of the moment. observe, if set, sees every
// accepted connection (to log the group negotiated).
func ServerTLSConfig(cert tls.Certificate, observe func(tls.ConnectionState)) *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{HybridGroup},
		Certificates:     []tls.Certificate{cert},
		ClientAuth:       tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := CheckHybrid(cs); err != nil {
				return err
			}
			if observe != nil {
				observe(cs)
			}
			return nil
		},
	}
}

// ClientTLSConfig is the registrar's side of the link: TLS 1.3 with
// X25519MLKEM768 only, the registrar certificate cert (nil: none, for a
// registration), and the MASA authenticated by roots under serverName.
func ClientTLSConfig(cert *tls.Certificate, roots *x509.CertPool, serverName string) *tls.Config {
	c := &tls.Config{
		MinVersion:       tls.VersionTLS13,
		MaxVersion:       tls.VersionTLS13,
		CurvePreferences: []tls.CurveID{HybridGroup},
		RootCAs:          roots,
		ServerName:       serverName,
		VerifyConnection: CheckHybrid,
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}
