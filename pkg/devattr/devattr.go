package devattr

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Object identifiers of the reported attributes (RFC 4108).
var (
	OIDFirmwareVersion = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 35}
	OIDFirmwareSHA256  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 41}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
)

// packageID is FirmwarePackageIdentifier with the legacy (OCTET STRING)
// choice for the name.
type packageID struct {
	Legacy []byte
}

type algorithmIdentifier struct {
	Algorithm asn1.ObjectIdentifier
}

type packageDigest struct {
	Algorithm algorithmIdentifier
	Digest    []byte
}

// ErrMalformed is returned for an attribute that does not decode.
var ErrMalformed = errors.New("devattr: malformed reported attribute")

// MaxVersionSize bounds a reported firmware version.
const MaxVersionSize = 128

// Reported is what a device says about itself.
type Reported struct {
	FirmwareVersion string
	// FirmwareSHA256 is lower-case hex, or empty.
	FirmwareSHA256 string
}

// Empty reports whether nothing was reported.
func (r Reported) Empty() bool { return r.FirmwareVersion == "" && r.FirmwareSHA256 == "" }

// Extensions returns the CSR extensions carrying r (for
// x509.CertificateRequest.ExtraExtensions).
func Extensions(r Reported) ([]pkix.Extension, error) {
	var out []pkix.Extension
	if r.FirmwareVersion != "" {
		if len(r.FirmwareVersion) > MaxVersionSize || !utf8.ValidString(r.FirmwareVersion) {
			return nil, fmt.Errorf("%w: firmware version", ErrMalformed)
		}
		v, err := asn1.Marshal(packageID{Legacy: []byte(r.FirmwareVersion)})
		if err != nil {
			return nil, fmt.Errorf("devattr: %w", err)
		}
		out = append(out, pkix.Extension{Id: OIDFirmwareVersion, Value: v})
	}
	if r.FirmwareSHA256 != "" {
		d, err := hex.DecodeString(r.FirmwareSHA256)
		if err != nil || len(d) != 32 {
			return nil, fmt.Errorf("%w: firmware digest: want 64 hex digits", ErrMalformed)
		}
		v, err := DigestDER(d)
		if err != nil {
			return nil, err
		}
		out = append(out, pkix.Extension{Id: OIDFirmwareSHA256, Value: v})
	}
	return out, nil
}

// FromCSR reads the reported attributes of a parsed CSR. A CSR without
// them reports nothing; a malformed one is an error.
func FromCSR(csr *x509.CertificateRequest) (Reported, error) {
	var r Reported
	for _, e := range csr.Extensions {
		switch {
		case e.Id.Equal(OIDFirmwareVersion):
			var p packageID
			rest, err := asn1.Unmarshal(e.Value, &p)
			if err != nil || len(rest) != 0 || len(p.Legacy) == 0 || len(p.Legacy) > MaxVersionSize || !utf8.Valid(p.Legacy) {
				return Reported{}, fmt.Errorf("%w: firmware package identifier (RFC 4108, legacy name)", ErrMalformed)
			}
			r.FirmwareVersion = string(p.Legacy)
		case e.Id.Equal(OIDFirmwareSHA256):
			var p packageDigest
			rest, err := asn1.Unmarshal(e.Value, &p)
			if err != nil || len(rest) != 0 || !p.Algorithm.Algorithm.Equal(oidSHA256) || len(p.Digest) != 32 {
				return Reported{}, fmt.Errorf("%w: firmware package digest: want SHA-256 and 32 bytes", ErrMalformed)
			}
			r.FirmwareSHA256 = hex.EncodeToString(p.Digest)
		}
	}
	return r, nil
}

// DigestDER encodes a SHA-256 firmware digest as the value of the
// firmwarePackageMessageDigest extension.
func DigestDER(sha256 []byte) ([]byte, error) {
	if len(sha256) != 32 {
		return nil, fmt.Errorf("%w: firmware digest of %d bytes, want 32", ErrMalformed, len(sha256))
	}
	v, err := asn1.Marshal(packageDigest{Algorithm: algorithmIdentifier{Algorithm: oidSHA256}, Digest: sha256})
	if err != nil {
		return nil, fmt.Errorf("devattr: %w", err)
	}
	return v, nil
}
