package onboard

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"

	"github.com/embark-iot/embark/pkg/devattr"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/provenance"
)

// MaxCSRSize bounds the CSR a device may send. A P-256 CSR is ~250 bytes;
// 4 KiB leaves room for attributes.
const MaxCSRSize = 4096

// parseCSR parses a DER CSR and checks its signature, once: everything
// after this uses the parsed value.
func parseCSR(der []byte) (*x509.CertificateRequest, string, error) {
	if len(der) == 0 {
		return nil, "", refuse(ReasonMalformedCSR, "empty CSR")
	}
	if len(der) > MaxCSRSize {
		return nil, "", refuse(ReasonPayloadTooLarge, "CSR of %d bytes exceeds %d", len(der), MaxCSRSize)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, "", refuseErr(ReasonMalformedCSR, err, "CSR does not parse: %v", err)
	}
	switch k := csr.PublicKey.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return nil, "", refuse(ReasonUnsupportedKey, "ECDSA curve %s not allowed (P-256, P-384)", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, "", refuse(ReasonUnsupportedKey, "%T keys not allowed on device links (ECDSA P-256/P-384, Ed25519)", csr.PublicKey)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, "", refuseErr(ReasonCSRSignature, err, "CSR signature does not verify: %v", err)
	}
	return csr, keyFingerprint(csr.RawSubjectPublicKeyInfo), nil
}

// reportedBy reads what the device reports in its CSR and compares it
// with the manifest.
func reportedBy(csr *x509.CertificateRequest, p device.Provenance) (device.Reported, string, error) {
	r, err := devattr.FromCSR(csr)
	if err != nil {
		return device.Reported{}, "", refuseErr(ReasonMalformedCSR, err, "%v", err)
	}
	rep := device.Reported{FirmwareVersion: r.FirmwareVersion, FirmwareSHA256: r.FirmwareSHA256}
	return rep, provenance.FirmwareMismatch(p, rep), nil
}

// keyFingerprint is the lower-case hex SHA-256 of a SubjectPublicKeyInfo.
func keyFingerprint(spki []byte) string {
	h := sha256.Sum256(spki)
	return hex.EncodeToString(h[:])
}
