package policy

import "time"

// Input is what a policy sees about one device and one request. Rules see
// its parts as the CEL variables device, provenance, vulns, history and
// request; fields carry their snake_case names (the cel tags), so a rule
// reads device.firmware_mismatch, vulns.max_cvss or request.time.
type Input struct {
	Device     Device     `json:"device"`
	Provenance Provenance `json:"provenance"`
	Vulns      Vulns      `json:"vulns"`
	History    History    `json:"history"`
	Request    Request    `json:"request"`
}

// Device is the device as the registry knows it.
type Device struct {
	ID           string `cel:"id" json:"id"`
	State        string `cel:"state" json:"state"`
	Zone         string `cel:"zone" json:"zone"`
	Manufacturer string `cel:"manufacturer" json:"manufacturer"`
	Model        string `cel:"model" json:"model"`
	Serial       string `cel:"serial" json:"serial"`
	HardwareRev  string `cel:"hardware_rev" json:"hardware_rev"`
	// FirmwareRecorded is the firmware version the manifest recorded.
	FirmwareRecorded string `cel:"firmware_recorded" json:"firmware_recorded"`
	// FirmwareReported is the version the device reported, "" if it
	// reported none.
	FirmwareReported string `cel:"firmware_reported" json:"firmware_reported"`
	// FirmwareMismatch: the device reported a version other than the
	// recorded one.
	FirmwareMismatch bool `cel:"firmware_mismatch" json:"firmware_mismatch"`
}

// Provenance is what the supply chain says about the device.
type Provenance struct {
	// ManufacturerTrusted: the operator trusts the device's manufacturer.
	ManufacturerTrusted bool `cel:"manufacturer_trusted" json:"manufacturer_trusted"`
	// OwnerOurs: the ownership record names this Embark's owner.
	OwnerOurs bool   `cel:"owner_ours" json:"owner_ours"`
	Owner     string `cel:"owner" json:"owner"`
	// Transfers counts the recorded ownership transfers.
	Transfers int64 `cel:"transfers" json:"transfers"`
	// Clone: a clone suspicion is recorded for the device.
	Clone bool `cel:"clone" json:"clone"`
	// IDevIDExpired: the factory identity presented has expired.
	IDevIDExpired    bool   `cel:"idevid_expired" json:"idevid_expired"`
	ManifestRevision int64  `cel:"manifest_revision" json:"manifest_revision"`
	Site             string `cel:"site" json:"site"`
}

// Vulns summarises the open vulnerabilities of the device's product.
type Vulns struct {
	// Open counts the open vulnerabilities of the recorded firmware.
	Open int64 `cel:"open" json:"open"`
	// MaxCVSS is the highest CVSS score among them, 0 if none.
	MaxCVSS float64 `cel:"max_cvss" json:"max_cvss"`
	// IDs are their identifiers (CVE-...).
	IDs []string `cel:"ids" json:"ids"`
	// ReportedMaxCVSS is the highest score of the reported firmware when it
	// differs from the recorded one, else 0.
	ReportedMaxCVSS float64 `cel:"reported_max_cvss" json:"reported_max_cvss"`
	// DataVersion is the vulnerability data version these figures rest on.
	DataVersion int64 `cel:"data_version" json:"data_version"`
}

// History is what earlier decisions and certificates say about the device.
type History struct {
	Enrollments int64 `cel:"enrollments" json:"enrollments"`
	Renewals    int64 `cel:"renewals" json:"renewals"`
	// LastDecision and LastRule are the action and rule of the previous
	// decision, "" if there was none.
	LastDecision string `cel:"last_decision" json:"last_decision"`
	LastRule     string `cel:"last_rule" json:"last_rule"`
}

// Request describes the request being decided.
type Request struct {
	// Transport is "coaps", "coaps+tcp", "mqtt" or "reevaluation".
	Transport string `cel:"transport" json:"transport"`
	// Renewal: the device renews an LDevID rather than enrolling.
	Renewal bool `cel:"renewal" json:"renewal"`
	// Time is when the request is decided (a CEL timestamp).
	Time time.Time `cel:"time" json:"time"`
}
