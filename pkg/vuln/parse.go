package vuln

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// Limits on documents.
const (
	// MaxDocumentSize is the largest document [Import] accepts, in bytes.
	MaxDocumentSize = 64 << 20
	// MaxComponents bounds the components of an SBOM, nested ones included.
	MaxComponents = 100000
	// MaxStatements bounds the statements (affects entries, or
	// vulnerabilities without affects) of a document.
	MaxStatements = 100000
)

// PropertyFixedIn names the vulnerability property that gives the version
// fixing it, when no affects[].versions entry with status "unaffected" does.
const PropertyFixedIn = "embark:fixed-in"

// State is the analysis state of a vulnerability statement.
type State string

// Statement states. CycloneDX analysis states map onto them: exploitable ->
// affected, resolved and resolved_with_pedigree -> fixed, in_triage,
// false_positive and not_affected as they are. A vulnerability without an
// analysis state is in triage.
const (
	Affected      State = "affected"
	NotAffected   State = "not_affected"
	Fixed         State = "fixed"
	InTriage      State = "in_triage"
	FalsePositive State = "false_positive"
)

// Open reports whether a statement in state s is an open finding: the
// product is, or may be, vulnerable.
func (s State) Open() bool { return s == Affected || s == InTriage }

// stateOf maps a CycloneDX analysis state onto a State. Besides CycloneDX's
// own values it accepts the VEX vocabulary of CSAF and OpenVEX (affected,
// fixed, under_investigation).
func stateOf(s cdx.ImpactAnalysisState) (State, bool) {
	switch strings.ToLower(strings.TrimSpace(string(s))) {
	case "exploitable", "affected":
		return Affected, true
	case "resolved", "resolved_with_pedigree", "fixed":
		return Fixed, true
	case "in_triage", "under_investigation", "":
		return InTriage, true
	case "false_positive":
		return FalsePositive, true
	case "not_affected":
		return NotAffected, true
	}
	return "", false
}

// Component is one entry of a product's SBOM.
type Component struct {
	Name    string `cbor:"1,keyasint,omitempty" json:"name"`
	Version string `cbor:"2,keyasint,omitempty" json:"version,omitempty"`
	Purl    string `cbor:"3,keyasint,omitempty" json:"purl,omitempty"`
	BOMRef  string `cbor:"4,keyasint,omitempty" json:"bom_ref,omitempty"`
}

// document is what Embark takes from a CycloneDX BOM.
type document struct {
	format string // "CycloneDX 1.6 JSON"
	serial string
	bomVer int
	sha256 string
	// product is the product metadata.component names, if it names one;
	// productRef is its bom-ref.
	product    *product
	productRef string
	// sbom is set when the document carries the product's component list.
	sbom       bool
	components []Component
	// bomRefs maps the document's bom-refs to subjects ("" when the
	// component can be the subject of no statement).
	bomRefs    map[string]string
	statements []docStatement
}

// docStatement is one affects[] entry of a vulnerability.
type docStatement struct {
	ID    string
	State State
	CVSS  float64
	// FixedIn is the version that fixes the vulnerability, if known.
	FixedIn       string
	Justification string
	// Ref is the affects[].ref; empty for a vulnerability without affects
	// in a document about a product.
	Ref string
}

func (d *document) kind() string {
	switch {
	case d.sbom && len(d.statements) > 0:
		return "sbom+vex"
	case d.sbom:
		return "sbom"
	}
	return "vex"
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// parse decodes and checks a CycloneDX document (JSON or XML).
func parse(doc []byte) (*document, error) {
	if len(doc) > MaxDocumentSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(doc), MaxDocumentSize)
	}
	sum := sha256.Sum256(doc)
	body := bytes.TrimLeft(bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf")), " \t\r\n")
	var r raw
	var enc string
	switch {
	case len(body) == 0:
		return nil, malformed("empty document")
	case body[0] == '{':
		enc = "JSON"
		if err := decodeJSON(body, &r); err != nil {
			return nil, err
		}
	case body[0] == '<':
		enc = "XML"
		if err := decodeXML(body, &r); err != nil {
			return nil, err
		}
	default:
		return nil, malformed("neither JSON nor XML")
	}
	d := &document{
		format:  fmt.Sprintf("CycloneDX %s %s", r.spec, enc),
		serial:  strings.TrimSpace(r.serial),
		bomVer:  r.version,
		sha256:  hex.EncodeToString(sum[:]),
		bomRefs: map[string]string{},
	}
	if len(d.serial) > 128 || !printable(d.serial) {
		return nil, malformed("serialNumber of %d bytes or with control characters", len(d.serial))
	}
	whyNot := "no metadata.component"
	if md := r.metadata; md != nil && md.Component != nil {
		top := md.Component
		p, err := productOf(md)
		if err == nil {
			d.product = &p
		} else {
			whyNot = err.Error()
		}
		subj, err := componentSubject(d.product, top, true)
		if err != nil {
			return nil, malformed("metadata.component: %v", err)
		}
		if ref := strings.TrimSpace(top.BOMRef); ref != "" {
			d.productRef = ref
			d.bomRefs[ref] = subj
		}
		if top.Components != nil {
			r.hasComponents = true
			for i := range *top.Components {
				if err := r.addComponent(fmt.Sprintf("metadata.component.components[%d]", i), &(*top.Components)[i]); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, c := range r.components {
		if c.BOMRef != "" {
			d.bomRefs[c.BOMRef] = componentSubjectOf(d.product, c.Purl, c.BOMRef)
		}
	}
	d.statements = r.statements
	switch {
	case r.hasComponents && d.product != nil:
		d.sbom = true
		d.components = r.components
	case r.hasComponents && len(d.statements) == 0:
		return nil, malformed("an SBOM must name its product in metadata.component (%s): "+
			"purl pkg:generic/<manufacturer>/<model>@<firmware>, or name, version and supplier", whyNot)
	case len(d.statements) == 0:
		return nil, malformed("neither components nor vulnerabilities")
	}
	return d, nil
}

// raw is what the decoders take from a document: the members Embark uses,
// with components and vulnerabilities already reduced to what it keeps.
type raw struct {
	bomFormat string // JSON only
	spec      cdx.SpecVersion
	serial    string
	version   int
	metadata  *cdx.Metadata
	// components are those of the components member, nested ones
	// flattened; hasComponents is set if the member is present.
	components    []Component
	hasComponents bool
	statements    []docStatement
}

// productOf identifies the product a BOM is about from its metadata: the
// purl pkg:generic/<manufacturer>/<model>@<firmware> of metadata.component,
// else its name (model) and version (firmware) with the manufacturer named
// by the component's or the metadata's manufacturer or supplier.
func productOf(md *cdx.Metadata) (product, error) {
	c := md.Component
	if purl := strings.TrimSpace(c.PackageURL); purl != "" {
		if p, ok := productOfPurl(purl); ok {
			return p, nil
		}
	}
	var mfr string
	for _, e := range []*cdx.OrganizationalEntity{c.Manufacturer, c.Supplier, md.Manufacturer, md.Supplier, md.Manufacture} {
		if e != nil && strings.TrimSpace(e.Name) != "" {
			mfr = strings.ToLower(strings.TrimSpace(e.Name))
			break
		}
	}
	if mfr == "" {
		return product{}, errors.New("no pkg:generic purl and no manufacturer or supplier")
	}
	p := product{mfr, strings.TrimSpace(c.Name), strings.TrimSpace(c.Version)}
	if err := p.check(); err != nil {
		return product{}, err
	}
	return p, nil
}

// componentSubject returns the subject statements about c are stored
// under: its purl's subject, else (for a component of a product with a
// bom-ref) "<product key>#<bom-ref>", else "". top marks metadata.component.
func componentSubject(p *product, c *cdx.Component, top bool) (string, error) {
	purl, ref := strings.TrimSpace(c.PackageURL), strings.TrimSpace(c.BOMRef)
	for _, f := range []struct{ name, v string }{{"purl", purl}, {"bom-ref", ref}} {
		if len(f.v) > MaxRefLen || !printable(f.v) {
			return "", fmt.Errorf("%s of %d bytes or with control characters", f.name, len(f.v))
		}
	}
	if purl != "" && !strings.HasPrefix(purl, "pkg:") {
		return "", fmt.Errorf("purl %q does not start with pkg:", purl)
	}
	if top && p != nil {
		return p.purl(), nil
	}
	return componentSubjectOf(p, purl, ref), nil
}

// componentSubjectOf is componentSubject for a component's purl and bom-ref.
func componentSubjectOf(p *product, purl, ref string) string {
	switch {
	case purl != "":
		return subjectOf(purl)
	case ref != "" && p != nil:
		return p.key() + "#" + ref
	}
	return ""
}

// addComponent checks c and its nested components and appends them.
func (r *raw) addComponent(path string, c *cdx.Component) error {
	if len(r.components) == MaxComponents {
		return malformed("more than %d components", MaxComponents)
	}
	if _, err := componentSubject(nil, c, false); err != nil {
		return malformed("%s: %v", path, err)
	}
	r.components = append(r.components, Component{
		Name: c.Name, Version: c.Version, Purl: strings.TrimSpace(c.PackageURL), BOMRef: strings.TrimSpace(c.BOMRef),
	})
	if c.Components != nil {
		for i := range *c.Components {
			if err := r.addComponent(fmt.Sprintf("%s.components[%d]", path, i), &(*c.Components)[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// addVulnerability checks v, the i-th vulnerability, and appends its
// statements.
func (r *raw) addVulnerability(i int, v *cdx.Vulnerability) error {
	if err := r.vulnerability(v); err != nil {
		return malformed("vulnerabilities[%d]: %v", i, err)
	}
	if len(r.statements) > MaxStatements {
		return malformed("more than %d statements", MaxStatements)
	}
	return nil
}

func (r *raw) vulnerability(v *cdx.Vulnerability) error {
	id := strings.TrimSpace(v.ID)
	switch {
	case id == "":
		return errors.New("no id")
	case len(id) > MaxIDLen || !printable(id):
		return fmt.Errorf("id of %d bytes or with control characters", len(id))
	}
	st := InTriage
	var justification string
	if v.Analysis != nil {
		var ok bool
		if st, ok = stateOf(v.Analysis.State); !ok {
			return fmt.Errorf("%s: unknown analysis state %q", id, v.Analysis.State)
		}
		justification = string(v.Analysis.Justification)
	}
	var cvss float64
	if v.Ratings != nil {
		for _, rt := range *v.Ratings {
			switch rt.Method {
			case cdx.ScoringMethodCVSSv2, cdx.ScoringMethodCVSSv3, cdx.ScoringMethodCVSSv31, cdx.ScoringMethodCVSSv4:
			default:
				continue
			}
			if rt.Score == nil {
				continue
			}
			if s := *rt.Score; math.IsNaN(s) || s < 0 || s > 10 {
				return fmt.Errorf("%s: %s score %v outside 0..10", id, rt.Method, s)
			}
			cvss = max(cvss, *rt.Score)
		}
	}
	var fixedIn string
	if v.Properties != nil {
		for _, p := range *v.Properties {
			if p.Name == PropertyFixedIn {
				fixedIn = strings.TrimSpace(p.Value)
			}
		}
	}
	stmt := docStatement{ID: id, State: st, CVSS: cvss, FixedIn: fixedIn, Justification: justification}
	if v.Affects == nil || len(*v.Affects) == 0 {
		r.statements = append(r.statements, stmt)
		return nil
	}
	for i, a := range *v.Affects {
		s := stmt
		if s.Ref = strings.TrimSpace(a.Ref); s.Ref == "" {
			return fmt.Errorf("%s: affects[%d]: no ref", id, i)
		}
		if len(s.Ref) > 2*MaxRefLen || strings.HasPrefix(s.Ref, "pkg:") && len(s.Ref) > MaxRefLen || !printable(s.Ref) {
			return fmt.Errorf("%s: affects[%d]: ref of %d bytes or with control characters", id, i, len(s.Ref))
		}
		if a.Range != nil {
			for _, av := range *a.Range {
				if av.Status == cdx.VulnerabilityStatusNotAffected && strings.TrimSpace(av.Version) != "" {
					s.FixedIn = strings.TrimSpace(av.Version)
					break
				}
			}
		}
		r.statements = append(r.statements, s)
	}
	return nil
}
