package vuln

import "errors"

// Errors of this package. Callers compare with errors.Is; store errors are
// wrapped, not replaced.
var (
	// ErrMalformed: the document is not a CycloneDX BOM Embark can use (not
	// JSON or XML, no bomFormat "CycloneDX", an unknown analysis state, a CVSS
	// score out of range, an SBOM that names no product, ...). The error
	// says which part.
	ErrMalformed = errors.New("vuln: malformed CycloneDX document")
	// ErrTooLarge: the document is larger than [MaxDocumentSize].
	ErrTooLarge = errors.New("vuln: document too large")
)
