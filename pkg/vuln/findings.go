package vuln

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/embark-iot/embark/pkg/store"
)

// Finding is an open vulnerability of a product: a statement in state
// [Affected] or [InTriage].
type Finding struct {
	// ID names the vulnerability (CVE-..., GHSA-..., ...).
	ID    string  `cbor:"1,keyasint" json:"id"`
	State State   `cbor:"2,keyasint" json:"state"`
	CVSS  float64 `cbor:"3,keyasint,omitempty" json:"cvss"`
	// FixedIn is the version that fixes it (of Via), if the data says.
	FixedIn string `cbor:"4,keyasint,omitempty" json:"fixed_in,omitempty"`
	// Via is the purl of what the statement is about: the product itself
	// or one of its SBOM's components ("<product key>#<bom-ref>" for a
	// component without purl).
	Via string `cbor:"5,keyasint" json:"via"`
	// DataVersion is the data version of the import that set the statement.
	DataVersion uint64 `cbor:"6,keyasint" json:"data_version"`
}

// SBOMInfo describes the stored SBOM of a product.
type SBOMInfo struct {
	// Serial is the BOM's serialNumber, Version its version.
	Serial  string `json:"serial,omitempty"`
	Version int    `json:"version,omitempty"`
	// SHA256 is the hex SHA-256 of the imported document, to compare with
	// the SBOM digest of a device's manifest entry.
	SHA256      string    `json:"sha256"`
	DataVersion uint64    `json:"data_version"`
	ImportedAt  time.Time `json:"imported_at"`
	// Components counts the SBOM's components.
	Components int `json:"components"`
}

// Findings is what the vulnerability data says about one product.
type Findings struct {
	// Product is the product's purl, empty when the manufacturer, model or
	// firmware version cannot name a product (then nothing else is set but
	// DataVersion).
	Product string `json:"product"`
	// Open lists the open findings, highest CVSS first.
	Open []Finding `json:"open"`
	// MaxCVSS is the highest CVSS score of the open findings (0 if none).
	MaxCVSS float64 `json:"max_cvss"`
	// DataVersion is the current data version: the decision made on these
	// findings rests on this version of the data.
	DataVersion uint64    `json:"data_version"`
	SBOM        *SBOMInfo `json:"sbom,omitempty"`
	// Components are the components of the product's SBOM; [Summary]
	// leaves them out.
	Components []Component `json:"components,omitempty"`
}

// FindingsFor returns the findings of the product a device with this
// manufacturer, model and firmware version is, with its SBOM's component
// list. A product the data does not know has no findings.
//
// A statement about the product itself decides its vulnerability; for a
// vulnerability the product's statements do not mention, a statement about
// any of its SBOM's components in an open state makes it an open finding
// (the highest CVSS one is shown).
func FindingsFor(r store.Reader, manufacturer, model, firmware string) (Findings, error) {
	f, err := Summary(r, manufacturer, model, firmware)
	if err != nil || f.SBOM == nil {
		return f, err
	}
	p := product{manufacturer, model, firmware}
	rec, err := loadComponents(r, p)
	if err != nil {
		return Findings{}, fmt.Errorf("vuln: findings of %s: %w", p, err)
	}
	f.Components = rec.Components
	if f.Components == nil {
		f.Components = []Component{}
	}
	return f, nil
}

// Summary is [FindingsFor] without the component list: three point reads
// whatever the size of the SBOM, for where decisions are made.
func Summary(r store.Reader, manufacturer, model, firmware string) (Findings, error) {
	f := Findings{Open: []Finding{}}
	var err error
	if f.DataVersion, err = dataVersion(r); err != nil {
		return Findings{}, fmt.Errorf("vuln: findings: %w", err)
	}
	p := product{manufacturer, model, firmware}
	if p.check() != nil {
		return f, nil
	}
	f.Product = p.purl()
	open, err := loadOpen(r, p)
	if err != nil {
		return Findings{}, fmt.Errorf("vuln: findings of %s: %w", p, err)
	}
	if open != nil {
		f.Open = open
	}
	for _, o := range open {
		f.MaxCVSS = max(f.MaxCVSS, o.CVSS)
	}
	rec, err := loadSBOM(r, p)
	if err != nil {
		return Findings{}, fmt.Errorf("vuln: findings of %s: %w", p, err)
	}
	if rec != nil {
		f.SBOM = &SBOMInfo{Serial: rec.Serial, Version: rec.BOMVersion, SHA256: rec.SHA256, DataVersion: rec.DataVersion,
			ImportedAt: time.Unix(rec.ImportedAt, 0).UTC(), Components: rec.Components}
	}
	return f, nil
}

// computeOpen computes the open findings of p from the statements (sorted,
// see sortFindings).
func computeOpen(r store.Reader, p product) ([]Finding, error) {
	comps, err := loadComponents(r, p)
	if err != nil {
		return nil, err
	}
	self := p.purl()
	var open []Finding
	var decided map[string]bool // vulnerabilities the product's own statements decide
	err = scan(r, KindStatement, self, func(_ string, v []byte) error {
		var s openStatement
		if err := decMode.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("decode statement: %w", err)
		}
		if decided == nil {
			decided = map[string]bool{}
		}
		decided[s.ID] = true
		if s.State.Open() {
			open = append(open, findingOf(s, self))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var at map[string]int // vulnerability id -> index in open, for component findings
	for _, subj := range comps.Subjects {
		if subj == self {
			continue
		}
		err := scan(r, KindStatement, subj, func(_ string, v []byte) error {
			var s openStatement
			if err := decMode.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("decode statement: %w", err)
			}
			if !s.State.Open() || decided[s.ID] {
				return nil
			}
			if i, ok := at[s.ID]; ok {
				if s.CVSS > open[i].CVSS {
					open[i] = findingOf(s, subj)
				}
				return nil
			}
			if at == nil {
				at = map[string]int{}
			}
			at[s.ID] = len(open)
			open = append(open, findingOf(s, subj))
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return sortFindings(open), nil
}

// refreshOpen recomputes and stores the open findings of p and reports
// whether they changed (whatever data version set them).
func refreshOpen(tx store.Tx, p product) (changed bool, err error) {
	old, err := loadOpen(tx, p)
	if err != nil {
		return false, err
	}
	open, err := computeOpen(tx, p)
	if err != nil {
		return false, err
	}
	switch {
	case len(open) == 0 && len(old) == 0:
		return false, nil
	case len(open) == 0:
		return true, tx.DeleteRecord(KindOpen, p.key())
	case slices.Equal(old, open):
		return false, nil
	}
	return !sameFindings(old, open), put(tx, KindOpen, p.key(), openRecord{Open: open})
}

// openStatement is the part of a statement a finding shows.
type openStatement struct {
	ID          string  `cbor:"1,keyasint"`
	State       State   `cbor:"2,keyasint"`
	CVSS        float64 `cbor:"3,keyasint,omitempty"`
	FixedIn     string  `cbor:"4,keyasint,omitempty"`
	DataVersion uint64  `cbor:"6,keyasint"`
}

func findingOf(s openStatement, via string) Finding {
	return Finding{ID: s.ID, State: s.State, CVSS: s.CVSS, FixedIn: s.FixedIn, Via: via, DataVersion: s.DataVersion}
}

// sortFindings orders findings by CVSS (highest first), then id and via.
func sortFindings(fs []Finding) []Finding {
	slices.SortFunc(fs, func(a, b Finding) int {
		if c := cmp.Compare(b.CVSS, a.CVSS); c != 0 {
			return c
		}
		if c := cmp.Compare(a.ID, b.ID); c != 0 {
			return c
		}
		return cmp.Compare(a.Via, b.Via)
	})
	return fs
}

// sameFindings reports whether two sorted finding lists say the same,
// whatever data version set them.
func sameFindings(a, b []Finding) bool {
	return slices.EqualFunc(a, b, func(x, y Finding) bool {
		return x.ID == y.ID && x.State == y.State && x.CVSS == y.CVSS && x.FixedIn == y.FixedIn && x.Via == y.Via
	})
}
