package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/mqttclient"
)

// Reason codes of failures the device side finds itself. Failures the
// server reports carry the server's reason code ("unknown_device",
// "held", ...), or "coap_" and the CoAP code when it gave none.
const (
	ReasonTimeout          = "timeout"           // no answer in time
	ReasonHandshake        = "handshake"         // the handshake failed for another reason
	ReasonHandshakeRefused = "handshake_refused" // the server ended the handshake with a fatal alert
	ReasonUntrustedServer  = "untrusted_server"  // the server's certificate did not verify
	ReasonTransport        = "transport"         // the connection failed after the handshake
	ReasonBadResponse      = "bad_response"      // an answer the device cannot use
	ReasonBadCACerts       = "bad_crts"          // crts without the Embark root
	ReasonKeyMismatch      = "key_mismatch"      // the certificate does not carry the CSR key
	ReasonUntrustedLDevID  = "untrusted_ldevid"  // the certificate does not chain to the root
	ReasonNotIdempotent    = "not_idempotent"    // a resent request got another certificate
	ReasonResponseLost     = "response_lost"     // the last answer was lost (loss simulation)
	ReasonCanceled         = "canceled"          // the run was stopped
	ReasonWrongIdentity    = "wrong_identity"    // the certificate names another device
	ReasonConnectRefused   = "connect_refused"   // the broker refused CONNECT
	ReasonPublishRefused   = "publish_refused"   // the broker refused a publish (PUBACK)
	ReasonSubscribeRefused = "subscribe_refused" // the broker refused a subscription
	ReasonNotConnected     = "not_connected"     // the stay ended before the device connected
	ReasonNotApplied       = "not_applied"       // the stay ended with a command not applied
)

// reasonOf names the reason a device failed.
func reasonOf(err error) string {
	var se *estclient.StatusError
	if errors.As(err, &se) {
		if se.Reason != "" {
			return se.Reason
		}
		return "coap_" + estclient.CodeString(se.Code)
	}
	var me *mqttclient.StatusError
	if errors.As(err, &me) {
		if me.Reason != "" {
			return me.Reason
		}
		return "mqtt_" + string(me.Status)
	}
	var ce *mqttclient.ConnectError
	if errors.As(err, &ce) {
		return ReasonConnectRefused
	}
	if r, ok := voucherReason(err); ok {
		return r
	}
	for _, s := range []struct {
		err    error
		reason string
	}{
		{ErrKeyMismatch, ReasonKeyMismatch},
		{ErrUntrustedCert, ReasonUntrustedLDevID},
		{ErrNotIdempotent, ReasonNotIdempotent},
		{ErrResponseLost, ReasonResponseLost},
		{ErrBadCACerts, ReasonBadCACerts},
		{ErrWrongIdentity, ReasonWrongIdentity},
		{ErrNotConnected, ReasonNotConnected},
		{ErrNotApplied, ReasonNotApplied},
		{mqttclient.ErrRefused, ReasonHandshakeRefused},
		{estclient.ErrResponse, ReasonBadResponse},
		{mqttclient.ErrResponse, ReasonBadResponse},
		{mqttclient.ErrPublishRefused, ReasonPublishRefused},
		{mqttclient.ErrSubscribe, ReasonSubscribeRefused},
		{context.Canceled, ReasonCanceled},
	} {
		if errors.Is(err, s.err) {
			return s.reason
		}
	}
	if isCertificateError(err) {
		return ReasonUntrustedServer
	}
	if isFatalAlert(err) {
		return ReasonHandshakeRefused
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return ReasonTimeout
	}
	if errors.Is(err, estclient.ErrHandshake) || errors.Is(err, mqttclient.ErrHandshake) {
		return ReasonHandshake
	}
	return ReasonTransport
}

// isCertificateError reports a server certificate that did not verify.
func isCertificateError(err error) bool {
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		cve *tls.CertificateVerificationError
	)
	return errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci) || errors.As(err, &cve)
}

// isFatalAlert reports a handshake the peer ended with a fatal alert
// (DTLS or TLS).
func isFatalAlert(err error) bool {
	var dtlsAlert interface{ IsFatalOrCloseNotify() bool }
	if errors.As(err, &dtlsAlert) && dtlsAlert.IsFatalOrCloseNotify() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "remote error"
}
