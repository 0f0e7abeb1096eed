package vuln

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/store"
)

// Record kinds of the store's opaque records this package owns. Keys use
// 0x00 as separator; no part of a key may contain it (documents with control
// characters in refs or identifiers are refused).
const (
	// KindMeta holds "version": the data version, a CBOR unsigned integer.
	KindMeta = "vuln.meta"
	// KindSBOM: product key -> what is known of the product's SBOM but its
	// component list.
	KindSBOM = "vuln.sbom"
	// KindComponents: product key -> the components of its SBOM and their
	// subjects.
	KindComponents = "vuln.components"
	// KindStatement: subject 0x00 vulnerability id -> statement.
	KindStatement = "vuln.vex"
	// KindOpen: product key -> the product's open findings, kept by every
	// import for the products whose findings it may change; absent when
	// there are none.
	KindOpen = "vuln.open"
	// KindUses: subject 0x00 product key -> product key, for every subject
	// a stored SBOM lists (its components and the product itself).
	KindUses = "vuln.uses"
	// KindRef: bom-ref 0x00 product key -> subject, for the bom-refs of
	// stored SBOMs.
	KindRef = "vuln.ref"
	// KindSerial: BOM serial number -> product key of the stored SBOM.
	KindSerial = "vuln.serial"

	metaVersion = "version"
)

var encMode = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err) // static options
	}
	return m
}()

// decMode decodes records; their arrays (components, open findings) may
// be longer than the library's default limit.
var decMode = func() cbor.DecMode {
	m, err := cbor.DecOptions{MaxArrayElements: math.MaxInt32, MaxMapPairs: math.MaxInt32}.DecMode()
	if err != nil {
		panic(err) // static options
	}
	return m
}()

// sbomRecord describes a stored SBOM.
type sbomRecord struct {
	Manufacturer string `cbor:"1,keyasint"`
	Model        string `cbor:"2,keyasint"`
	Firmware     string `cbor:"3,keyasint"`
	Serial       string `cbor:"4,keyasint,omitempty"`
	BOMVersion   int    `cbor:"5,keyasint,omitempty"`
	SHA256       string `cbor:"6,keyasint"`
	DataVersion  uint64 `cbor:"7,keyasint"`
	// ImportedAt is in seconds since the epoch.
	ImportedAt int64  `cbor:"8,keyasint"`
	ProductRef string `cbor:"9,keyasint,omitempty"`
	// Components counts the entries of the component list.
	Components int `cbor:"10,keyasint,omitempty"`
}

// componentsRecord is the component list of a stored SBOM.
type componentsRecord struct {
	Components []Component `cbor:"1,keyasint,omitempty"`
	// Subjects are the sorted, distinct subjects of the components (not
	// the product's own).
	Subjects []string `cbor:"2,keyasint,omitempty"`
}

// openRecord holds a product's open findings, sorted (see sortFindings).
type openRecord struct {
	Open []Finding `cbor:"1,keyasint"`
}

// statement is a stored VEX statement; its subject and vulnerability id
// are its key.
type statement struct {
	ID            string  `cbor:"1,keyasint"`
	State         State   `cbor:"2,keyasint"`
	CVSS          float64 `cbor:"3,keyasint,omitempty"`
	FixedIn       string  `cbor:"4,keyasint,omitempty"`
	Justification string  `cbor:"5,keyasint,omitempty"`
	DataVersion   uint64  `cbor:"6,keyasint"`
	// Source is the serial number (else the SHA-256) of the document.
	Source string `cbor:"7,keyasint,omitempty"`
	// At is the import time in seconds since the epoch.
	At int64 `cbor:"8,keyasint"`
}

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

func statementKey(subject, id string) string { return subject + "\x00" + id }

func pairKey(a, b string) string { return a + "\x00" + b }

func put(tx store.Tx, kind, key string, v any) error {
	b, err := encMode.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", kind, err)
	}
	return tx.PutRecord(kind, key, b)
}

// get decodes the record kind/key into v; found is false if there is none.
func get(r store.Reader, kind, key string, v any) (found bool, err error) {
	b, err := r.Record(kind, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s %q: %w", kind, key, err)
	}
	return true, nil
}

// scan calls fn for every record of kind whose key starts with prefix
// followed by 0x00, with the rest of the key.
func scan(r store.Reader, kind, prefix string, fn func(rest string, val []byte) error) error {
	prefix += "\x00"
	return r.Records(kind, prefix, func(k string, v []byte) (bool, error) {
		rest, ok := strings.CutPrefix(k, prefix)
		if !ok {
			return false, nil
		}
		return true, fn(rest, v)
	})
}

// dataVersion returns the current data version (0 before any import).
func dataVersion(r store.Reader) (uint64, error) {
	var v uint64
	_, err := get(r, KindMeta, metaVersion, &v)
	return v, err
}

func loadSBOM(r store.Reader, p product) (*sbomRecord, error) {
	var rec sbomRecord
	found, err := get(r, KindSBOM, p.key(), &rec)
	if err != nil || !found {
		return nil, err
	}
	return &rec, nil
}

// loadComponents returns the component list of p's SBOM (empty if none).
func loadComponents(r store.Reader, p product) (componentsRecord, error) {
	var rec componentsRecord
	_, err := get(r, KindComponents, p.key(), &rec)
	return rec, err
}

// loadOpen returns the stored open findings of p.
func loadOpen(r store.Reader, p product) ([]Finding, error) {
	var rec openRecord
	_, err := get(r, KindOpen, p.key(), &rec)
	return rec.Open, err
}
