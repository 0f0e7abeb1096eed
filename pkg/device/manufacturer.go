package device

import (
	"fmt"
	"regexp"
	"time"
)

// Manufacturer is a manufacturer the operator trusts: the CA certificates
// that issue its IDevIDs and the hybrid public keys that sign its manifests.
type Manufacturer struct {
	Name string `cbor:"1,keyasint" json:"name"`
	// Roots are DER trust anchors for IDevID chains; Intermediates are DER
	// CA certificates that devices may omit from their handshake (some
	// clients send only their leaf).
	Roots         [][]byte `cbor:"2,keyasint" json:"-"`
	Intermediates [][]byte `cbor:"3,keyasint,omitempty" json:"-"`
	// ManifestKeys are encoded hybrid public keys (see package hybridsig).
	ManifestKeys [][]byte `cbor:"4,keyasint" json:"-"`
	// ManifestRevision is the revision of the newest manifest imported.
	ManifestRevision uint64    `cbor:"5,keyasint,omitempty" json:"manifest_revision"`
	TrustedAt        time.Time `cbor:"6,keyasint" json:"trusted_at"`
	Devices          uint64    `cbor:"7,keyasint,omitempty" json:"devices"`
	// Distrusted, when set, says why the operator no longer trusts the
	// manufacturer: its IDevIDs no longer verify and its manifests are refused.
	Distrusted   string    `cbor:"8,keyasint,omitempty" json:"distrusted,omitempty"`
	DistrustedAt time.Time `cbor:"9,keyasint,omitempty" json:"distrusted_at,omitzero"`
	// RevokedKeys are the KeyIDs of manifest keys withdrawn after a compromise.
	RevokedKeys []string `cbor:"10,keyasint,omitempty" json:"revoked_keys,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{0,62}$`)

// ValidManufacturerName reports whether name may name a manufacturer: lower
// case letters, digits, '.' and '-', at most 63 characters. Manufacturer names
// are part of device identifiers, so they never contain ':'.
func ValidManufacturerName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("manufacturer name %q: want [a-z0-9][a-z0-9.-]{0,62}", name)
	}
	return nil
}
