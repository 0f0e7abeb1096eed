// Package pki is Embark's embedded certificate authority.
//
// The CA issues LDevIDs (operational device certificates) and Embark's own
// TLS/DTLS server certificate. It is built on smallstep's CA service
// interface [apiv1.CertificateAuthorityService]; the embedded default is
// softcas, which signs with an intermediate key held in memory. [New] accepts
// any other implementation of the interface (for example stepcas, to issue
// from an existing step-ca), so the rest of Embark depends only on [CA].
//
// # Files
//
// [Init] creates a CA in a directory if there is none and otherwise loads the
// one there; [Load] only loads. A CA directory holds
//
//	root.crt          self-signed root, ECDSA P-256, 10 years      0644
//	root.key          PKCS#8 PEM                                   0600
//	intermediate.crt  issued by the root, ECDSA P-256, 5 years     0644
//	intermediate.key  PKCS#8 PEM                                   0600
//	server.crt        Embark's server certificate + intermediate   0644
//	server.key        its key                                      0600
//
// The directory is created 0700. Existing keys are never overwritten. A key
// file that group or others may read is refused, naming the file. root.key
// may be removed after [Init] to keep the root offline: the CA only needs the
// intermediate to issue. Encrypted key files are not supported.
//
// # Issuing LDevIDs
//
// [CA.IssueLDevID] is the hot path. The caller has already parsed the device's
// CSR and checked its signature; it passes only the public key, so nothing the
// device asked for (subject, SANs, extensions) reaches the certificate. An
// LDevID carries the device URN as its only URN URI SAN, the common name, a
// random 128-bit serial, digitalSignature key usage and the clientAuth
// extended key usage. It carries nothing that policy may change later, such
// as the device's zone. By default the x509.Certificate template is built
// directly, so the only costly step per certificate is signing (and the
// self-check that crypto/x509 performs on every signature).
//
// # Templates
//
// [WithTemplate] takes a step-ca style template (go.step.sm/crypto/x509util)
// for operators who need extra extensions or another subject. It is parsed
// once and tried once at load time; a template that does not parse, does not
// produce valid JSON, or produces a certificate that is not a usable LDevID is
// refused. Per certificate it sees the same data as a step-ca leaf template:
//
//	.Subject          {"commonName": <CommonName>}
//	.SANs             [{"type": "uri", "value": <DeviceID>}]
//	.Insecure.CR      the request: .Subject, .URIs, .PublicKey
//	.DeviceID         the device URN
//
// Whatever the template says, the CA sets the serial number, validity and
// public key, adds the device URN if the template left it out, and refuses a
// result that is a CA, lacks clientAuth or names another device.
//
// # Verifying
//
// [CA.VerifyLDevID] checks that a presented certificate is an LDevID of this
// CA and valid at a given time; [DeviceIDOf] extracts the device URN. The
// errors [ErrNotIssuedHere], [ErrExpired] and [ErrNotYetValid] let callers
// tell the cases apart.
package pki
