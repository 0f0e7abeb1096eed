package device

import (
	"fmt"
	"strings"
	"time"
)

// State is where a device stands in its life cycle.
type State string

// The states of a device. See the package documentation for the transitions.
const (
	Expected       State = "expected"
	Onboarded      State = "onboarded"
	Quarantined    State = "quarantined"
	Held           State = "held"
	Denied         State = "denied"
	Revoked        State = "revoked"
	Decommissioned State = "decommissioned"
	// Transferred: sold on; this registry's credentials for it are revoked.
	Transferred State = "transferred"
)

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case Expected, Onboarded, Quarantined, Held, Denied, Revoked, Decommissioned, Transferred:
		return true
	}
	return false
}

// URNPrefix starts every device identifier. The identifier is stable for the
// life of the device and is what LDevIDs carry as their URI SAN.
const URNPrefix = "urn:dev:embark:"

// ID returns the stable identifier of the device with this manufacturer and
// serial number: "urn:dev:embark:<manufacturer>:<serial>".
func ID(manufacturer, serial string) string {
	return URNPrefix + manufacturer + ":" + serial
}

// ParseID splits a device identifier into manufacturer and serial. It also
// accepts the short form "<manufacturer>:<serial>".
func ParseID(id string) (manufacturer, serial string, err error) {
	rest := strings.TrimPrefix(id, URNPrefix)
	m, s, ok := strings.Cut(rest, ":")
	if !ok || m == "" || s == "" {
		return "", "", fmt.Errorf("device id %q: want %s<manufacturer>:<serial>", id, URNPrefix)
	}
	return m, s, nil
}

// NormalizeID returns the full URN form of a device identifier given in either form.
func NormalizeID(id string) (string, error) {
	m, s, err := ParseID(id)
	if err != nil {
		return "", err
	}
	return ID(m, s), nil
}

// Provenance is what the manufacturer's signed manifest says about a device.
type Provenance struct {
	Manufacturer     string    `cbor:"1,keyasint" json:"manufacturer"`
	Serial           string    `cbor:"2,keyasint" json:"serial"`
	IDevIDKeySHA256  string    `cbor:"3,keyasint" json:"idevid_key_sha256"`
	Model            string    `cbor:"4,keyasint,omitempty" json:"model,omitempty"`
	HardwareRev      string    `cbor:"5,keyasint,omitempty" json:"hardware_rev,omitempty"`
	FirmwareVersion  string    `cbor:"6,keyasint,omitempty" json:"firmware_version,omitempty"`
	FirmwareSHA256   string    `cbor:"7,keyasint,omitempty" json:"firmware_sha256,omitempty"`
	SBOMRef          string    `cbor:"8,keyasint,omitempty" json:"sbom_ref,omitempty"`
	SBOMSHA256       string    `cbor:"9,keyasint,omitempty" json:"sbom_sha256,omitempty"`
	ManufacturedAt   time.Time `cbor:"10,keyasint,omitempty" json:"manufactured_at,omitzero"`
	Site             string    `cbor:"11,keyasint,omitempty" json:"site,omitempty"`
	Owner            string    `cbor:"12,keyasint,omitempty" json:"owner,omitempty"`
	ManifestRevision uint64    `cbor:"13,keyasint,omitempty" json:"manifest_revision,omitempty"`
	// OwnerKey is the KeyID of the owner's hybrid key, from the manifest or
	// the latest accepted transfer record.
	OwnerKey string `cbor:"14,keyasint,omitempty" json:"owner_key,omitempty"`
	// Transfers counts the ownership transfers accepted for the device.
	Transfers uint32 `cbor:"15,keyasint,omitempty" json:"transfers,omitempty"`
	// ManifestKey names the key that signed the manifest revision the
	// device was last imported from: the first 16 hex digits of its KeyID.
	ManifestKey string `cbor:"16,keyasint,omitempty" json:"manifest_key,omitempty"`
}

// Reported is what a device said about itself at its latest enrollment or
// renewal (CSR attributes over CoAP, claims over MQTT).
type Reported struct {
	FirmwareVersion string `cbor:"1,keyasint,omitempty" json:"firmware_version,omitempty"`
	FirmwareSHA256  string `cbor:"2,keyasint,omitempty" json:"firmware_sha256,omitempty"`
	// At is when; in the registry it is the device record's UpdatedAt.
	At time.Time `cbor:"3,keyasint,omitempty" json:"at,omitzero"`
	// Remote is the endpoint the device spoke from.
	Remote string `cbor:"4,keyasint,omitempty" json:"remote,omitempty"`
	// DigestAsRecorded is set, and FirmwareSHA256 left empty in the
	// registry, when the reported digest equals the manifest's: the
	// registry keeps one copy of it.
	DigestAsRecorded bool `cbor:"5,keyasint,omitempty" json:"digest_as_recorded,omitempty"`
}

// Empty reports whether the device reported no firmware facts.
func (r Reported) Empty() bool {
	return r.FirmwareVersion == "" && r.FirmwareSHA256 == "" && !r.DigestAsRecorded
}

// Digest returns the reported firmware digest, given the manifest's.
func (r Reported) Digest(recorded string) string {
	if r.DigestAsRecorded {
		return recorded
	}
	return r.FirmwareSHA256
}

// Flags are facts about a device that policy and operators see.
type Flags struct {
	// Clone is set when the device looked cloned: its serial with another
	// IDevID key, or two LDevIDs in use at once from different endpoints.
	Clone string `cbor:"1,keyasint,omitempty" json:"clone,omitempty"`
	// Reevaluate is set when the data the device's decision rested on
	// changed (trust removed, manifest revised) and the decision has not
	// been made again yet.
	Reevaluate string `cbor:"2,keyasint,omitempty" json:"reevaluate,omitempty"`
	// Reonboard is set while the device is held because it asked for a
	// new identity with an LDevID in use (factory reset or clone).
	Reonboard string `cbor:"3,keyasint,omitempty" json:"reonboard,omitempty"`
	// Pending is an action the device must still be told about (zone
	// changed, rotate, revoked): recorded until a transport delivers it.
	Pending string `cbor:"4,keyasint,omitempty" json:"pending,omitempty"`
}

// Profile is where a device may go on the network: what policy decided
// and the enforcement points apply.
type Profile struct {
	SecurityLevel int      `cbor:"1,keyasint,omitempty" json:"security_level,omitempty"`
	Segment       string   `cbor:"2,keyasint,omitempty" json:"segment,omitempty"`
	Topics        []string `cbor:"3,keyasint,omitempty" json:"topics,omitempty"`
	// Rule and Policy name the decision (rule name, policy content hash).
	Rule   string `cbor:"4,keyasint,omitempty" json:"rule,omitempty"`
	Policy string `cbor:"5,keyasint,omitempty" json:"policy,omitempty"`
	// RenewGrace is how long after expiry the device's certificate may
	// still renew: for devices that are rarely connected.
	RenewGrace time.Duration `cbor:"6,keyasint,omitempty" json:"renew_grace,omitempty"`
}

// Device is one entry of the registry.
type Device struct {
	ID         string     `cbor:"1,keyasint" json:"id"`
	Provenance Provenance `cbor:"2,keyasint" json:"provenance"`
	State      State      `cbor:"3,keyasint" json:"state"`
	// Zone is where the device is allowed on the network. It lives here,
	// never in the certificate, and is enforced where devices connect.
	Zone string `cbor:"4,keyasint,omitempty" json:"zone,omitempty"`
	// Current and Previous are the serial numbers (hex) of the device's
	// current LDevID and of the one it replaced.
	Current  string `cbor:"5,keyasint,omitempty" json:"current_cert,omitempty"`
	Previous string `cbor:"6,keyasint,omitempty" json:"previous_cert,omitempty"`
	// Reason says why the device is in its state, for people.
	Reason string `cbor:"7,keyasint,omitempty" json:"reason,omitempty"`
	// Cause names what moved the device last: "enroll", "renew",
	// "operator:alice", "policy:<rule>".
	Cause     string    `cbor:"8,keyasint,omitempty" json:"cause,omitempty"`
	UpdatedAt time.Time `cbor:"9,keyasint" json:"updated_at"`
	// Revision is the compare-and-swap counter of the record. The store
	// increments it on every write and refuses a write whose Revision does not
	// match the stored one.
	Revision uint64 `cbor:"10,keyasint" json:"revision"`
	// Enrollments counts certificates issued by enrollment (not renewal).
	Enrollments uint32 `cbor:"11,keyasint,omitempty" json:"enrollments,omitempty"`
	Renewals    uint32 `cbor:"12,keyasint,omitempty" json:"renewals,omitempty"`
	// Reported is what the device last said about itself.
	Reported Reported `cbor:"13,keyasint,omitempty" json:"reported,omitzero"`
	Flags    Flags    `cbor:"14,keyasint,omitempty" json:"flags,omitzero"`
	// Profile completes Zone: security level, segment, allowed topics.
	Profile Profile `cbor:"15,keyasint,omitempty" json:"profile,omitzero"`
}

// CertStatus is the status of an issued certificate.
type CertStatus string

// Certificate statuses.
const (
	// CertIssued: issued and sent, not yet seen authenticating the device.
	CertIssued CertStatus = "issued"
	// CertInUse: the device has authenticated with it at least once.
	CertInUse CertStatus = "in_use"
	// CertSuperseded: replaced before it was ever seen in use (lost
	// response, reboot mid-enrollment) or retired by a successor in use.
	CertSuperseded CertStatus = "superseded"
	// CertRevoked: revoked by an operator, decommissioning or policy.
	CertRevoked CertStatus = "revoked"
)

// Usable reports whether a certificate with this status may still authenticate.
func (s CertStatus) Usable() bool { return s == CertIssued || s == CertInUse }

// CertKind says how a certificate came to be.
type CertKind string

// Certificate kinds.
const (
	KindEnroll CertKind = "enroll"
	KindRenew  CertKind = "renew"
)

// Certificate is an LDevID issued by Embark.
type Certificate struct {
	Serial   string `cbor:"1,keyasint" json:"serial"`
	DeviceID string `cbor:"2,keyasint" json:"device_id"`
	// DER is the certificate itself.
	DER []byte `cbor:"3,keyasint" json:"-"`
	// KeySHA256 is the hex SHA-256 of the certificate's SubjectPublicKeyInfo.
	KeySHA256 string     `cbor:"4,keyasint" json:"key_sha256"`
	Kind      CertKind   `cbor:"5,keyasint" json:"kind"`
	Status    CertStatus `cbor:"6,keyasint" json:"status"`
	NotBefore time.Time  `cbor:"7,keyasint" json:"not_before"`
	NotAfter  time.Time  `cbor:"8,keyasint" json:"not_after"`
	// Predecessor is the serial of the certificate that authenticated the
	// renewal that issued this one; empty for enrollments.
	Predecessor string    `cbor:"9,keyasint,omitempty" json:"predecessor,omitempty"`
	StatusAt    time.Time `cbor:"10,keyasint,omitempty" json:"status_at,omitzero"`
	Reason      string    `cbor:"11,keyasint,omitempty" json:"reason,omitempty"`
	// SeenFrom is the endpoint the certificate last authenticated from.
	SeenFrom string `cbor:"12,keyasint,omitempty" json:"seen_from,omitempty"`
}
