package vuln

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// ImportResult describes an imported document.
type ImportResult struct {
	// Format is "CycloneDX <spec version> JSON" or "... XML".
	Format string `json:"format"`
	// Kind is "sbom", "vex" or "sbom+vex".
	Kind string `json:"kind"`
	// SHA256 is the hex SHA-256 of the document.
	SHA256 string `json:"sha256"`
	// Product is the key (manufacturer/model@firmware) of the product whose
	// SBOM the document carried, if it carried one; Products counts such
	// SBOMs (0 or 1) and Components their components.
	Product    string `json:"product,omitempty"`
	Products   int    `json:"products"`
	Components int    `json:"components"`
	// Statements counts the statements stored (unmatched ones included).
	Statements int `json:"statements"`
	// Unmatched lists, as "<vulnerability id> <ref>", the statements whose
	// ref names no known product or component. Those with a purl are stored
	// anyway (a later SBOM may list the purl); the others say why not.
	Unmatched []string `json:"unmatched"`
	// DataVersion is the data version this import set.
	DataVersion uint64 `json:"data_version"`
	// ChangedProducts are the products whose open findings changed.
	ChangedProducts []string `json:"changed_products"`
	// AffectedDevices counts the devices of those products now flagged for
	// re-evaluation.
	AffectedDevices int `json:"affected_devices"`
}

// Import parses a CycloneDX document (JSON or XML) holding an SBOM, VEX
// statements or both, and stores it in one transaction: the product's SBOM
// (replacing the one stored before), the statements (each replacing the
// statement stored before for the same subject and vulnerability), the new
// data version, the re-evaluation flag of every device whose open findings
// changed, and one audit entry (action "import-vuln"). A document that is
// refused ([ErrMalformed], [ErrTooLarge]) or fails to commit changes nothing.
func Import(ctx context.Context, st store.Store, doc []byte, actor string, now time.Time) (ImportResult, error) {
	d, err := parse(doc)
	if err != nil {
		return ImportResult{}, fmt.Errorf("vuln: import: %w", err)
	}
	var res ImportResult
	err = st.Update(ctx, func(tx store.Tx) error {
		var err error
		res, err = apply(tx, d, actor, now)
		return err
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("vuln: import: %w", err)
	}
	return res, nil
}

// target is a statement of the document with the subject it is stored under.
type target struct {
	docStatement
	subject string
}

func apply(tx store.Tx, d *document, actor string, now time.Time) (ImportResult, error) {
	ver, err := dataVersion(tx)
	if err != nil {
		return ImportResult{}, err
	}
	next := ver + 1
	res := ImportResult{Format: d.format, Kind: d.kind(), SHA256: d.sha256, DataVersion: next,
		Unmatched: []string{}, ChangedProducts: []string{}}

	var targets []target
	for _, s := range d.statements {
		subj, why, err := resolve(tx, d, s.Ref)
		if err != nil {
			return ImportResult{}, err
		}
		if subj == "" {
			res.Unmatched = append(res.Unmatched, fmt.Sprintf("%s %s (%s; not stored)", s.ID, refName(s.Ref), why))
			continue
		}
		targets = append(targets, target{s, subj})
	}

	// The products whose findings the document may change.
	touched := map[string]product{}
	if d.sbom {
		touched[d.product.key()] = *d.product
	}
	for _, t := range targets {
		if err := usersOf(tx, t.subject, touched); err != nil {
			return ImportResult{}, err
		}
	}

	if d.sbom {
		if err := storeSBOM(tx, d, next, now); err != nil {
			return ImportResult{}, err
		}
		res.Product, res.Products, res.Components = d.product.key(), 1, len(d.components)
	}
	source := d.serial
	if source == "" {
		source = "sha256:" + d.sha256
	}
	// Write in key order (bbolt inserts into a node of a transaction by
	// moving its tail); a stable sort keeps the document's last statement for
	// a key the one that stays.
	slices.SortStableFunc(targets, func(a, b target) int {
		return strings.Compare(statementKey(a.subject, a.ID), statementKey(b.subject, b.ID))
	})
	for _, t := range targets {
		s := statement{ID: t.ID, State: t.State, CVSS: t.CVSS, FixedIn: t.FixedIn, Justification: t.Justification,
			DataVersion: next, Source: source, At: now.Unix()}
		if err := put(tx, KindStatement, statementKey(t.subject, t.ID), s); err != nil {
			return ImportResult{}, err
		}
	}
	res.Statements = len(targets)

	changed := map[string]bool{}
	for _, k := range slices.Sorted(maps.Keys(touched)) {
		c, err := refreshOpen(tx, touched[k])
		if err != nil {
			return ImportResult{}, err
		}
		if c {
			changed[k] = true
			res.ChangedProducts = append(res.ChangedProducts, k)
		}
	}

	// Statements about subjects no stored SBOM lists are matched only if
	// they name a product the registry has devices of.
	var unknown []target
	onDevices := map[string]bool{}
	for _, t := range targets {
		known, err := knownSubject(tx, t.subject)
		if err != nil {
			return ImportResult{}, err
		}
		if known {
			continue
		}
		if p, ok := productOfPurl(t.subject); ok {
			onDevices[p.key()] = false
		}
		unknown = append(unknown, t)
	}
	flagged, err := scanDevices(tx, changed, onDevices)
	if err != nil {
		return ImportResult{}, err
	}
	for _, t := range unknown {
		if p, ok := productOfPurl(t.subject); ok && onDevices[p.key()] {
			continue
		}
		res.Unmatched = append(res.Unmatched, t.ID+" "+refName(t.Ref))
	}
	sort.Strings(res.Unmatched)
	res.Unmatched = slices.Compact(res.Unmatched)

	reason := fmt.Sprintf("vulnerability data v%d", next)
	for _, id := range flagged {
		dv, err := tx.Device(id)
		if err != nil {
			return ImportResult{}, err
		}
		dv.Flags.Reevaluate = reason
		if err := tx.PutDevice(&dv); err != nil {
			return ImportResult{}, err
		}
	}
	res.AffectedDevices = len(flagged)

	if err := put(tx, KindMeta, metaVersion, next); err != nil {
		return ImportResult{}, err
	}
	detail := fmt.Sprintf("%s %s sha256 %s: data version %d", d.format, res.Kind, d.sha256, next)
	if d.sbom {
		detail += fmt.Sprintf(", SBOM of %s (%d components)", res.Product, res.Components)
	}
	detail += fmt.Sprintf(", %d statements (%d unmatched), %d products changed, %d devices to re-evaluate",
		res.Statements, len(res.Unmatched), len(res.ChangedProducts), res.AffectedDevices)
	_, err = tx.AppendAudit(audit.Entry{Time: now, Actor: actor, Action: "import-vuln", Outcome: "ok", Detail: detail})
	if err != nil {
		return ImportResult{}, err
	}
	return res, nil
}

func refName(ref string) string {
	if ref == "" {
		return "(no affects)"
	}
	return ref
}

// resolve returns the subject a statement's ref names, or "" and why not.
// It tries, in order: a bom-ref of the document, a BOM-Link
// (urn:cdx:<serial>/<version>#<bom-ref>) into the document or a stored SBOM,
// a purl, and a bom-ref of exactly one stored SBOM.
func resolve(r store.Reader, d *document, ref string) (subject, why string, err error) {
	if ref == "" {
		if d.product != nil {
			return d.product.purl(), "", nil
		}
		return "", "no affects and no product in metadata.component", nil
	}
	if subj, ok := d.bomRefs[ref]; ok {
		if subj == "" {
			return "", "component without purl", nil
		}
		return subj, "", nil
	}
	if cdx.IsBOMLink(ref) {
		link, err := cdx.ParseBOMLink(ref)
		if err != nil {
			return "", "bad BOM-Link", nil
		}
		serial, inner := link.SerialNumber(), link.Reference()
		if serial == d.serial {
			if inner == "" && d.product != nil {
				return d.product.purl(), "", nil
			}
			if subj := d.bomRefs[inner]; subj != "" {
				return subj, "", nil
			}
		}
		pk, err := r.Record(KindSerial, serial)
		if err != nil {
			if isNotFound(err) {
				return "", "no stored SBOM with this serial number", nil
			}
			return "", "", err
		}
		if inner == "" {
			if p, ok := productOfKey(string(pk)); ok {
				return p.purl(), "", nil
			}
			return "", "", fmt.Errorf("bad product key %q in %s", pk, KindSerial)
		}
		subj, err := r.Record(KindRef, pairKey(inner, string(pk)))
		if err != nil {
			if isNotFound(err) {
				return "", "no such bom-ref in the stored SBOM", nil
			}
			return "", "", err
		}
		return string(subj), "", nil
	}
	if strings.HasPrefix(ref, "pkg:") {
		return subjectOf(ref), "", nil
	}
	if len(ref) > MaxRefLen {
		return "", "unknown bom-ref", nil
	}
	var subjects []string
	err = scan(r, KindRef, ref, func(_ string, v []byte) error {
		if s := string(v); !slices.Contains(subjects, s) {
			subjects = append(subjects, s)
		}
		return nil
	})
	switch {
	case err != nil:
		return "", "", err
	case len(subjects) == 0:
		return "", "unknown bom-ref", nil
	case len(subjects) > 1:
		return "", fmt.Sprintf("bom-ref of %d stored SBOMs, use a purl or BOM-Link", len(subjects)), nil
	}
	return subjects[0], "", nil
}

// localSubject reports whether a subject is a purl-less component of one
// product ("<product key>#<bom-ref>"), and of which.
func localSubject(subject string) (product, bool) {
	if strings.HasPrefix(subject, "pkg:") {
		return product{}, false
	}
	k, _, ok := strings.Cut(subject, "#")
	if !ok {
		return product{}, false
	}
	return productOfKey(k)
}

// usersOf adds to set the products whose findings statements about subject
// can change: the product the subject is, and those whose SBOM lists it.
func usersOf(r store.Reader, subject string, set map[string]product) error {
	if p, ok := productOfPurl(subject); ok {
		set[p.key()] = p
	}
	if p, ok := localSubject(subject); ok {
		set[p.key()] = p
		return nil
	}
	return scan(r, KindUses, subject, func(pk string, _ []byte) error {
		p, ok := productOfKey(pk)
		if !ok {
			return fmt.Errorf("bad product key %q in %s", pk, KindUses)
		}
		set[pk] = p
		return nil
	})
}

// knownSubject reports whether a stored SBOM lists subject (as a component
// or as its product).
func knownSubject(r store.Reader, subject string) (bool, error) {
	if _, ok := localSubject(subject); ok {
		return true, nil
	}
	known := false
	err := r.Records(KindUses, subject+"\x00", func(k string, _ []byte) (bool, error) {
		known = strings.HasPrefix(k, subject+"\x00")
		return false, nil
	})
	return known, err
}

// scanDevices walks the devices of the manufacturers of changed and
// onDevices. It returns the devices of a changed product (by recorded or
// reported firmware), but for decommissioned and transferred ones, and sets
// onDevices[k] for each product k of onDevices some device is.
func scanDevices(r store.Reader, changed, onDevices map[string]bool) ([]string, error) {
	mfrs := map[string]bool{}
	for _, set := range []map[string]bool{changed, onDevices} {
		for k := range set {
			if p, ok := productOfKey(k); ok {
				mfrs[p.Manufacturer] = true
			}
		}
	}
	var flagged []string
	for _, m := range slices.Sorted(maps.Keys(mfrs)) {
		prefix := device.URNPrefix + m + ":"
		err := r.Devices(prefix, func(dv device.Device) (bool, error) {
			if !strings.HasPrefix(dv.ID, prefix) {
				return false, nil
			}
			pv := dv.Provenance
			hit := false
			for i, fw := range []string{pv.FirmwareVersion, dv.Reported.FirmwareVersion} {
				if fw == "" || i == 1 && fw == pv.FirmwareVersion {
					continue
				}
				k := product{pv.Manufacturer, pv.Model, fw}.key()
				hit = hit || changed[k]
				if _, ok := onDevices[k]; ok {
					onDevices[k] = true
				}
			}
			if hit && dv.State != device.Decommissioned && dv.State != device.Transferred {
				flagged = append(flagged, dv.ID)
			}
			return true, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return flagged, nil
}

// storeSBOM replaces the SBOM of the document's product and its index
// entries.
func storeSBOM(tx store.Tx, d *document, next uint64, now time.Time) error {
	p := *d.product
	pk, self := p.key(), p.purl()
	old, err := loadSBOM(tx, p)
	if err != nil {
		return err
	}
	if old != nil {
		comps, err := loadComponents(tx, p)
		if err != nil {
			return err
		}
		for _, s := range append(slices.Clip(comps.Subjects), self) {
			if _, local := localSubject(s); !local {
				if err := tx.DeleteRecord(KindUses, pairKey(s, pk)); err != nil {
					return err
				}
			}
		}
		refs := []string{old.ProductRef}
		for _, c := range comps.Components {
			refs = append(refs, c.BOMRef)
		}
		for _, ref := range refs {
			if ref != "" {
				if err := tx.DeleteRecord(KindRef, pairKey(ref, pk)); err != nil {
					return err
				}
			}
		}
		if old.Serial != "" {
			if v, err := tx.Record(KindSerial, old.Serial); err == nil && string(v) == pk {
				if err := tx.DeleteRecord(KindSerial, old.Serial); err != nil {
					return err
				}
			} else if err != nil && !isNotFound(err) {
				return err
			}
		}
	}
	rec := sbomRecord{Manufacturer: p.Manufacturer, Model: p.Model, Firmware: p.Firmware, Serial: d.serial,
		BOMVersion: d.bomVer, SHA256: d.sha256, DataVersion: next, ImportedAt: now.Unix(), ProductRef: d.productRef,
		Components: len(d.components)}
	comps := componentsRecord{Components: d.components}
	for _, c := range d.components {
		if s := componentSubjectOf(&p, c.Purl, c.BOMRef); s != "" && s != self {
			comps.Subjects = append(comps.Subjects, s)
		}
	}
	slices.Sort(comps.Subjects)
	comps.Subjects = slices.Compact(comps.Subjects)
	if err := put(tx, KindSBOM, pk, rec); err != nil {
		return err
	}
	if err := put(tx, KindComponents, pk, comps); err != nil {
		return err
	}
	for _, s := range append(slices.Clip(comps.Subjects), self) {
		if _, local := localSubject(s); !local {
			if err := tx.PutRecord(KindUses, pairKey(s, pk), []byte(pk)); err != nil {
				return err
			}
		}
	}
	if d.productRef != "" {
		if err := tx.PutRecord(KindRef, pairKey(d.productRef, pk), []byte(self)); err != nil {
			return err
		}
	}
	refs := make([]Component, 0, len(d.components))
	for _, c := range d.components {
		if c.BOMRef != "" {
			refs = append(refs, c)
		}
	}
	slices.SortStableFunc(refs, func(a, b Component) int { return strings.Compare(a.BOMRef, b.BOMRef) })
	for _, c := range refs {
		if err := tx.PutRecord(KindRef, pairKey(c.BOMRef, pk), []byte(componentSubjectOf(&p, c.Purl, c.BOMRef))); err != nil {
			return err
		}
	}
	if d.serial != "" {
		return tx.PutRecord(KindSerial, d.serial, []byte(pk))
	}
	return nil
}
