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
// intermediate to issue (a rollover needs it back). Encrypted key files are
// not supported.
//
// After a rollover the directory also holds
//
//	ca-state.json               the generations and their states    0644
//	generations/N/              one directory per generation N >= 2 0700
//	  intermediate.crt/.key     its intermediate
//	  root.crt/.key             a new root, if it brought one
//	  bridge.crt                the intermediate certified by the previous root
//
// The files of generation 1 stay where Init put them.
//
// # Rollover
//
// A CA has one or more intermediates, numbered by generation. The active one
// issues every new certificate; [CA.Rollover] creates a new one (signed by
// the active root, whose key must be present) and makes it active. The one
// it replaces becomes "previous": what it issued still verifies
// ([CA.VerifyLDevID], [CA.IssuedHere]) and it still signs its own CRL
// ([CA.CreateCRLFor]), so devices move onto the new intermediate when they
// renew, at their own pace. [CA.Retire] ends the overlap: what a retired
// intermediate issued no longer verifies (ErrRetired); the caller first
// makes sure that no live certificate chains to it. [CA.Issuers] lists the
// generations; [CA.Chains], [CA.Intermediates], [CA.Roots] and
// [CA.CACerts] give verifiers and devices what they need during the
// overlap; [CA.ChainOf] returns the chain of one certificate.
//
// A rollover is crash-safe: the new generation's files are written and
// synced in a temporary directory that is renamed into place, and the
// rollover takes effect when ca-state.json is replaced by a rename. A
// rollover interrupted before that leaves the CA as it was.
//
// A new root ([RolloverOptions].NewRoot) is the rare case, and the design
// is chosen so that no device loses Embark at any point: the new
// intermediate is signed by the new root and also certified, under the same
// name and key, by the previous root in a bridge certificate. Embark's own
// certificates (server, MQTT responder) are presented with the intermediate
// and its bridge, so a device that trusts only the previous root keeps
// verifying them, and so do certificates the new intermediate issues. /crts
// publishes both roots during the overlap, the new one last; devices learn
// it there and trust it from then on. (A cross-signed root would be the
// alternative, but the roots Init creates have a path length of one: a
// cross-signed root would need a second CA level under them.)
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
// [CA.VerifyLDevID] checks that a presented certificate is an LDevID of one
// of this CA's intermediates that is not retired, and valid at a given
// time; [DeviceIDOf] extracts the device URN. The errors [ErrNotIssuedHere],
// [ErrRetired], [ErrExpired] and [ErrNotYetValid] let callers tell the cases
// apart.
package pki
