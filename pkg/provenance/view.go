package provenance

import (
	"errors"
	"fmt"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/vuln"
)

// View is everything the supply chain says about one device, as typed
// facts: what policy decides on and what `embark device show` prints.
type View struct {
	DeviceID string       `json:"device_id"`
	State    device.State `json:"state"`
	Zone     string       `json:"zone,omitempty"`

	Manufacturer ManufacturerView `json:"manufacturer"`
	Serial       string           `json:"serial"`
	Model        string           `json:"model,omitempty"`
	HardwareRev  string           `json:"hardware_rev,omitempty"`
	Firmware     FirmwareView     `json:"firmware"`
	Owner        OwnerView        `json:"owner"`
	SBOM         SBOMView         `json:"sbom"`
	Vulns        VulnView         `json:"vulnerabilities"`
	Flags        device.Flags     `json:"flags,omitzero"`
	// DataVersions name the versions of the data this view was built from.
	DataVersions DataVersions `json:"data_versions"`
}

// ManufacturerView is the device's manufacturer as the operator trusts it.
type ManufacturerView struct {
	Name       string `json:"name"`
	Trusted    bool   `json:"trusted"`
	Distrusted string `json:"distrusted,omitempty"`
}

// FirmwareView compares what the manifest recorded with what the device reported.
type FirmwareView struct {
	RecordedVersion string          `json:"recorded_version,omitempty"`
	RecordedSHA256  string          `json:"recorded_sha256,omitempty"`
	Reported        device.Reported `json:"reported,omitzero"`
	// Mismatch explains how the reported firmware differs, empty when it
	// matches or nothing was reported.
	Mismatch string `json:"mismatch,omitempty"`
}

// OwnerView is who owns the device.
type OwnerView struct {
	Name      string `json:"name,omitempty"`
	Key       string `json:"key,omitempty"`
	Transfers uint32 `json:"transfers,omitempty"`
	// Ours reports whether the owner is this operator.
	Ours bool `json:"ours"`
}

// SBOMView is the software bill of materials of the device's firmware.
type SBOMView struct {
	Ref        string           `json:"ref,omitempty"`
	SHA256     string           `json:"sha256,omitempty"`
	Components []vuln.Component `json:"components,omitempty"`
}

// VulnView is the open vulnerabilities of the device's firmware: the one
// its manifest recorded, and, when the device reports another version, the
// one it runs.
type VulnView struct {
	Open    []vuln.Finding `json:"open,omitempty"`
	MaxCVSS float64        `json:"max_cvss"`
	// Reported is set when the device reports another firmware version
	// than its manifest: the findings of what it says it runs.
	Reported *ReportedVulns `json:"reported,omitempty"`
}

// ReportedVulns are the findings of a reported firmware version.
type ReportedVulns struct {
	FirmwareVersion string         `json:"firmware_version"`
	Open            []vuln.Finding `json:"open,omitempty"`
	MaxCVSS         float64        `json:"max_cvss"`
}

// DataVersions names the data a view (and a decision) rests on.
type DataVersions struct {
	ManifestRevision uint64 `json:"manifest_revision"`
	ManifestKey      string `json:"manifest_key,omitempty"`
	VulnData         uint64 `json:"vuln_data"`
}

// ViewOf builds the provenance view of a device, with its SBOM components.
// me is the operator's owner identity (nil: ownership is not judged).
func ViewOf(r store.Reader, id string, me *owner.Identity) (View, error) {
	return viewOf(r, id, me, vuln.FindingsFor)
}

// Facts builds the provenance view without the SBOM component list: what a
// decision needs, at the cost of a few point reads.
func Facts(r store.Reader, id string, me *owner.Identity) (View, error) {
	return viewOf(r, id, me, vuln.Summary)
}

// Cache remembers manufacturers and product findings for the duration of
// one read transaction, for callers that build the facts of many devices
// (re-evaluation): devices of one product share them.
type Cache struct {
	mfrs     map[string]device.Manufacturer
	findings map[[3]string]vuln.Findings
}

// NewCache returns an empty cache; use it within one transaction only.
func NewCache() *Cache {
	return &Cache{mfrs: map[string]device.Manufacturer{}, findings: map[[3]string]vuln.Findings{}}
}

// FactsOf is Facts for a device already read in this transaction, with a
// cache shared by the devices of one pass.
func FactsOf(r store.Reader, d device.Device, me *owner.Identity, c *Cache) (View, error) {
	summary := func(r store.Reader, m, model, fw string) (vuln.Findings, error) {
		k := [3]string{m, model, fw}
		if f, ok := c.findings[k]; ok {
			return f, nil
		}
		f, err := vuln.Summary(r, m, model, fw)
		if err == nil {
			c.findings[k] = f
		}
		return f, err
	}
	mfr := func(name string) (device.Manufacturer, error) {
		if m, ok := c.mfrs[name]; ok {
			return m, nil
		}
		m, err := r.Manufacturer(name)
		if err == nil || errors.Is(err, store.ErrNotFound) {
			c.mfrs[name] = m
		}
		return m, err
	}
	return build(r, d, me, summary, mfr)
}

func viewOf(r store.Reader, id string, me *owner.Identity,
	findings func(store.Reader, string, string, string) (vuln.Findings, error)) (View, error) {
	d, err := r.Device(id)
	if err != nil {
		return View{}, err
	}
	return build(r, d, me, findings, r.Manufacturer)
}

func build(r store.Reader, d device.Device, me *owner.Identity,
	findings func(store.Reader, string, string, string) (vuln.Findings, error),
	manufacturer func(string) (device.Manufacturer, error)) (View, error) {
	id := d.ID
	p := d.Provenance
	v := View{
		DeviceID: d.ID, State: d.State, Zone: d.Zone,
		Manufacturer: ManufacturerView{Name: p.Manufacturer},
		Serial:       p.Serial, Model: p.Model, HardwareRev: p.HardwareRev,
		Firmware: FirmwareView{RecordedVersion: p.FirmwareVersion, RecordedSHA256: p.FirmwareSHA256, Reported: reportedOf(d),
			Mismatch: FirmwareMismatch(p, reportedOf(d))},
		Owner:        OwnerView{Name: p.Owner, Key: p.OwnerKey, Transfers: p.Transfers},
		SBOM:         SBOMView{Ref: p.SBOMRef, SHA256: p.SBOMSHA256},
		Flags:        d.Flags,
		DataVersions: DataVersions{ManifestRevision: p.ManifestRevision, ManifestKey: p.ManifestKey},
	}
	if me != nil {
		v.Owner.Ours = me.Owns(p.Owner, p.OwnerKey)
	}
	m, err := manufacturer(p.Manufacturer)
	switch {
	case err == nil:
		v.Manufacturer.Trusted = m.Distrusted == ""
		v.Manufacturer.Distrusted = m.Distrusted
	case !errors.Is(err, store.ErrNotFound):
		return View{}, err
	}
	f, err := findings(r, p.Manufacturer, p.Model, p.FirmwareVersion)
	if err != nil {
		return View{}, fmt.Errorf("provenance: vulnerabilities of %s: %w", id, err)
	}
	v.SBOM.Components = f.Components
	v.Vulns = VulnView{Open: f.Open, MaxCVSS: f.MaxCVSS}
	v.DataVersions.VulnData = f.DataVersion
	if rv := d.Reported.FirmwareVersion; rv != "" && rv != p.FirmwareVersion {
		rf, err := findings(r, p.Manufacturer, p.Model, rv)
		if err != nil {
			return View{}, fmt.Errorf("provenance: vulnerabilities of %s: %w", id, err)
		}
		v.Vulns.Reported = &ReportedVulns{FirmwareVersion: rv, Open: rf.Open, MaxCVSS: rf.MaxCVSS}
	}
	return v, nil
}

// FirmwareMismatch explains how a reported firmware differs from the
// manifest; empty when it matches or nothing was reported.
func FirmwareMismatch(p device.Provenance, r device.Reported) string {
	var out string
	if r.FirmwareVersion != "" && p.FirmwareVersion != "" && r.FirmwareVersion != p.FirmwareVersion {
		out = fmt.Sprintf("version %q, manifest %q", r.FirmwareVersion, p.FirmwareVersion)
	}
	if r.FirmwareSHA256 != "" && p.FirmwareSHA256 != "" && r.FirmwareSHA256 != p.FirmwareSHA256 {
		if out != "" {
			out += "; "
		}
		out += fmt.Sprintf("digest %.16s.., manifest %.16s..", r.FirmwareSHA256, p.FirmwareSHA256)
	}
	return out
}

// reportedOf returns what the device reported, with the digest spelled out.
func reportedOf(d device.Device) device.Reported {
	r := d.Reported
	r.FirmwareSHA256, r.DigestAsRecorded = r.Digest(d.Provenance.FirmwareSHA256), false
	if r.At.IsZero() && r.Remote != "" {
		r.At = d.UpdatedAt
	}
	return r
}
