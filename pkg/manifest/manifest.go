package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// PayloadType is the DSSE payload type of a manifest.
const PayloadType = "application/vnd.embark.manifest.v1+json"

// DefaultMaxSize is the largest envelope [Open] accepts unless told
// otherwise (about 250,000 devices).
const DefaultMaxSize = 128 << 20

// Limits on entry fields.
const (
	// MaxSerialSize is the longest serial number, in bytes.
	MaxSerialSize = 128
	// MaxTextSize is the longest free-text field (model, site, ...), in bytes.
	MaxTextSize = 1024
)

// Manifest is what a manufacturer says about the devices it made.
type Manifest struct {
	// Manufacturer names the manufacturer: lower-case letters, digits, '.'
	// and '-', at most 63 characters, starting with a letter or digit.
	Manufacturer string `json:"manufacturer"`
	// Revision orders the manifests of one manufacturer; it starts at 1.
	Revision uint64    `json:"revision"`
	IssuedAt time.Time `json:"issued_at"`
	Devices  []Entry   `json:"devices"`
}

// Entry is one device of a manifest. Serial and IDevIDKeySHA256 are required;
// the rest is optional.
type Entry struct {
	// Serial is the device's serial number, as in its IDevID's subject.
	Serial string `json:"serial"`
	// IDevIDKeySHA256 is [KeyFingerprint] of the IDevID's public key.
	IDevIDKeySHA256 string    `json:"idevid_key_sha256"`
	Model           string    `json:"model,omitempty"`
	HardwareRev     string    `json:"hardware_rev,omitempty"`
	FirmwareVersion string    `json:"firmware_version,omitempty"`
	FirmwareSHA256  string    `json:"firmware_sha256,omitempty"`
	SBOMRef         string    `json:"sbom_ref,omitempty"`
	SBOMSHA256      string    `json:"sbom_sha256,omitempty"`
	ManufacturedAt  time.Time `json:"manufactured_at,omitzero"`
	Site            string    `json:"site,omitempty"`
	// Owner names the party the device was sold to.
	Owner string `json:"owner,omitempty"`
	// OwnerKey is the KeyID (package hybridsig) of the owner's hybrid
	// public key, when the buyer gave it to the manufacturer. It anchors
	// ownership transfers: the first transfer record must be signed by it.
	OwnerKey string `json:"owner_key,omitempty"`
}

// KeyFingerprint returns the lower-case hexadecimal SHA-256 of a DER
// SubjectPublicKeyInfo, as used in [Entry.IDevIDKeySHA256].
func KeyFingerprint(spkiDER []byte) string {
	sum := sha256.Sum256(spkiDER)
	return hex.EncodeToString(sum[:])
}

// nameRE is the rule of device.ValidManufacturerName; manufacturer names
// are part of device identifiers.
var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// ValidName reports whether name may name a manufacturer.
func ValidName(name string) bool { return nameRE.MatchString(name) }

// Validate checks m against the rules of the format: a valid manufacturer
// name, a revision above zero, an issue time, at least one device; for each
// device a serial number of 1 to [MaxSerialSize] printable characters
// without white space or '/', a 64-digit lower-case hexadecimal key
// fingerprint, digests of the same form when present and free text of at
// most [MaxTextSize] bytes without control characters. No serial may appear
// twice and no key may belong to two serials ([ErrDuplicate]). The error is a
// [*ValidationError] for the first rule broken.
func (m *Manifest) Validate() error {
	top := func(field, reason string) error {
		return &ValidationError{Device: -1, Field: field, Reason: reason, Err: ErrInvalid}
	}
	if !ValidName(m.Manufacturer) {
		return top("manufacturer", fmt.Sprintf("%q: want [a-z0-9][a-z0-9.-]{0,62}", m.Manufacturer))
	}
	if m.Revision == 0 {
		return top("revision", "must be at least 1")
	}
	if m.IssuedAt.IsZero() {
		return top("issued_at", "missing")
	}
	if len(m.Devices) == 0 {
		return top("devices", "no devices")
	}
	serials := make(map[string]int, len(m.Devices))
	keys := make(map[string]int, len(m.Devices))
	for i := range m.Devices {
		e := &m.Devices[i]
		if err := e.validate(); err != nil {
			err.Device, err.Serial = i, e.Serial
			return err
		}
		if j, ok := serials[e.Serial]; ok {
			return &ValidationError{Device: i, Serial: e.Serial, Field: "serial", Err: ErrDuplicate,
				Reason: fmt.Sprintf("serial %q also listed at devices[%d]", e.Serial, j)}
		}
		serials[e.Serial] = i
		if j, ok := keys[e.IDevIDKeySHA256]; ok {
			return &ValidationError{Device: i, Serial: e.Serial, Field: "idevid_key_sha256", Err: ErrDuplicate,
				Reason: fmt.Sprintf("key %s also belongs to serial %q", e.IDevIDKeySHA256, m.Devices[j].Serial)}
		}
		keys[e.IDevIDKeySHA256] = i
	}
	return nil
}

// validate checks one entry; the caller fills in Device and Serial.
func (e *Entry) validate() *ValidationError {
	bad := func(field, reason string) *ValidationError {
		return &ValidationError{Field: field, Reason: reason, Err: ErrInvalid}
	}
	if reason := checkSerial(e.Serial); reason != "" {
		return bad("serial", reason)
	}
	if !isSHA256Hex(e.IDevIDKeySHA256) {
		return bad("idevid_key_sha256", "want 64 lower-case hexadecimal digits")
	}
	for _, d := range []struct{ field, v string }{
		{"firmware_sha256", e.FirmwareSHA256},
		{"sbom_sha256", e.SBOMSHA256},
		{"owner_key", e.OwnerKey},
	} {
		if d.v != "" && !isSHA256Hex(d.v) {
			return bad(d.field, "want 64 lower-case hexadecimal digits")
		}
	}
	for _, f := range []struct{ field, v string }{
		{"model", e.Model},
		{"hardware_rev", e.HardwareRev},
		{"firmware_version", e.FirmwareVersion},
		{"sbom_ref", e.SBOMRef},
		{"site", e.Site},
		{"owner", e.Owner},
	} {
		if reason := checkText(f.v); reason != "" {
			return bad(f.field, reason)
		}
	}
	return nil
}

// checkSerial returns why s is not a valid serial number, or "".
func checkSerial(s string) string {
	switch {
	case s == "":
		return "missing"
	case len(s) > MaxSerialSize:
		return fmt.Sprintf("%d bytes, at most %d", len(s), MaxSerialSize)
	case !utf8.ValidString(s):
		return "not UTF-8"
	case strings.ContainsRune(s, '/'):
		return "contains '/'"
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) {
			return fmt.Sprintf("contains %U, want printable characters without white space", r)
		}
	}
	return ""
}

// checkText returns why s is not acceptable free text, or "".
func checkText(s string) string {
	if len(s) > MaxTextSize {
		return fmt.Sprintf("%d bytes, at most %d", len(s), MaxTextSize)
	}
	if !utf8.ValidString(s) {
		return "not UTF-8"
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("contains control character %U", r)
		}
	}
	return ""
}

// isSHA256Hex reports whether s is 64 lower-case hexadecimal digits.
func isSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// CheckSerial returns why s is not a valid serial number, or "". Other
// formats that name devices by serial (transfer records) use the same rule.
func CheckSerial(s string) string { return checkSerial(s) }

// IsSHA256Hex reports whether s is 64 lower-case hexadecimal digits, the
// form of key fingerprints and digests in Embark's wire formats.
func IsSHA256Hex(s string) bool { return isSHA256Hex(s) }
