// Package vuln keeps what CycloneDX SBOM and VEX documents say about the
// products devices are, and answers which vulnerabilities a product has open.
//
// # Products
//
// A product is a manufacturer's model running one firmware version: what a
// device's provenance (manufacturer, model, firmware version) names. An SBOM
// names its product in metadata.component, by the package URL
//
//	pkg:generic/<manufacturer>/<model>@<firmware version>
//
// (the manufacturer as Embark names it, model and version percent-encoded
// as in any purl; qualifiers and subpath are ignored), or else by the
// component's name (the model) and version (the firmware version) with the
// manufacturer named by the component's or the metadata's manufacturer or
// supplier (lower-cased; it must be a valid Embark manufacturer name). The
// product's registry key is "<manufacturer>/<model>@<firmware>", escaped
// the same way. Model and firmware are at most [MaxPartLen] bytes.
//
// # Documents
//
// [Import] takes one CycloneDX document, JSON or XML (any spec version the
// cyclonedx-go module knows), of at most [MaxDocumentSize] bytes:
//
//   - An SBOM: metadata.component names the product and components (nested
//     ones included) list what it contains. The component list (name,
//     version, purl, bom-ref) replaces the one stored for the product.
//   - VEX statements: vulnerabilities[], each with an id, ratings (the
//     highest CVSSv2/v3/v31/v4 score counts), analysis.state (see [State];
//     no analysis means in triage) and affects[].ref. A ref may be a bom-ref
//     of the same document, a BOM-Link urn:cdx:<serial>/<version>[#<bom-ref>]
//     into the document or a stored SBOM (the newest SBOM with that serial
//     number, whatever its version), a purl (a product's, by the convention
//     above, or a component's, compared as a string), or a bom-ref of
//     exactly one stored SBOM. A vulnerability without affects in a
//     document about a product is about that product. The version fixing a
//     vulnerability is the first affects[].versions entry with status
//     "unaffected" and an exact version, else the vulnerability property
//     [PropertyFixedIn] ("embark:fixed-in"). Version ranges are not
//     evaluated: a ref must name the exact product or component version.
//   - Both in one document.
//
// Each statement is stored under its subject (the product's or component's
// purl; "<product key>#<bom-ref>" for a component without purl) and the
// vulnerability id; a later statement for the same subject and
// vulnerability replaces the earlier one, so imports are repeatable and
// later documents update earlier ones. Statements are never deleted.
// Statements whose ref names no stored SBOM's product or component and no
// product the registry has devices of are reported as unmatched; those
// with a purl are stored all the same, so that a later SBOM listing the
// purl picks them up.
//
// # Data versions
//
// Every successful import increments the data version and stamps it on the
// SBOM and statements it stores. [FindingsFor] returns the current version
// with the findings, and each finding the version that set it, so a
// decision can record which data it rested on. An import flags every device
// whose product's open findings changed (by recorded or reported firmware;
// decommissioned and transferred devices excepted) with
// Flags.Reevaluate = "vulnerability data v<N>", in the same transaction.
//
// # Findings
//
// A product's open findings are its statements in state [Affected] or
// [InTriage]. A statement about the product itself decides a vulnerability
// for it (a VEX saying the product is not affected although a component
// is); otherwise an open statement about any component of its SBOM makes
// the vulnerability an open finding of the product.
//
// An import recomputes and stores the open findings of every product it may
// change (the product of its SBOM, the products whose SBOM lists a subject
// of its statements, the products its statements are about), so that
// [Summary], what decisions use, is three point reads whatever the size of
// the SBOM; [FindingsFor] adds the component list.
//
// # Storage
//
// The data lives in the store's opaque records: [KindMeta] (the data
// version), [KindSBOM], [KindComponents], [KindStatement] and [KindOpen]
// (CBOR, core deterministic encoding), and the indexes [KindUses], [KindRef]
// and [KindSerial] (raw strings). Keys join their parts with a 0x00 byte;
// documents with control characters in identifiers, refs or purls are
// refused. Documents are decoded member by member: an SBOM costs memory in
// proportion to what is kept of it (at most [MaxComponents] components and
// [MaxStatements] statements), not to cyclonedx-go's object tree for the
// whole document.
package vuln
