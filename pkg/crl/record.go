package crl

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/store"
)

// Record kinds and keys this package owns in the registry.
const (
	// KindRevoked holds one record per revoked certificate, keyed by its
	// serial in lower-case hex; the value is a CBOR [Revocation].
	KindRevoked = "crl.revoked"
	// KindMeta holds the publisher's state: under key "number" the last CRL
	// number used, in decimal.
	KindMeta = "crl.meta"

	metaNumber = "number"
)

// RFC 5280 CRLReason codes.
const (
	ReasonUnspecified          = 0
	ReasonKeyCompromise        = 1
	ReasonCACompromise         = 2
	ReasonAffiliationChanged   = 3
	ReasonSuperseded           = 4
	ReasonCessationOfOperation = 5
	ReasonPrivilegeWithdrawn   = 9
	ReasonAACompromise         = 10
)

// Revocation is what the registry keeps about a revoked certificate.
type Revocation struct {
	// RevokedAt is the revocation time listed in the CRL.
	RevokedAt time.Time `cbor:"1,keyasint"`
	// Reason is the RFC 5280 CRLReason code.
	Reason int `cbor:"2,keyasint"`
	// NotAfter is the certificate's expiry; the entry leaves the CRL after
	// it.
	NotAfter time.Time `cbor:"3,keyasint"`
	// Issuer is the key id (authority key identifier, hex) of the
	// intermediate that issued the certificate: the entry is listed on that
	// intermediate's CRL. Empty when it is not known (revocations recorded
	// before CA rollovers existed): the entry is then listed on every CRL,
	// which is harmless, serials being random.
	Issuer string `cbor:"4,keyasint,omitempty"`
}

var encMode = sync.OnceValues(func() (cbor.EncMode, error) {
	return cbor.EncOptions{Time: cbor.TimeUnix}.EncMode()
})

func validReason(r int) bool {
	switch r {
	case ReasonUnspecified, ReasonKeyCompromise, ReasonCACompromise, ReasonAffiliationChanged,
		ReasonSuperseded, ReasonCessationOfOperation, ReasonPrivilegeWithdrawn, ReasonAACompromise:
		return true
	}
	return false
}

// SerialHex returns the registry form of a certificate serial: lower-case hex
// without leading zeros, as fmt's %x prints a *big.Int.
func SerialHex(n *big.Int) string { return n.Text(16) }

// parseSerial parses a serial in registry form.
func parseSerial(s string) (*big.Int, error) {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok || n.Sign() <= 0 || n.Text(16) != s {
		return nil, fmt.Errorf("%q: %w", s, ErrInvalidSerial)
	}
	return n, nil
}

// RecordRevocation records in tx that the certificate with this serial
// (lower-case hex) and expiry was revoked at the given time for reason (an
// RFC 5280 CRLReason code). It is called inside the transaction that revokes
// the certificate; call [Publisher.Trigger] after it commits. A serial already
// recorded keeps its first revocation and nil is returned. The issuing
// intermediate, whose CRL will list the entry, is read from the
// certificate in the registry (its authority key identifier).
func RecordRevocation(tx store.Tx, serial string, notAfter, at time.Time, reason int) error {
	if _, err := parseSerial(serial); err != nil {
		return fmt.Errorf("crl: record revocation: %w", err)
	}
	if !validReason(reason) {
		return fmt.Errorf("crl: record revocation of %s: reason %d: %w", serial, reason, ErrInvalidReason)
	}
	if at.IsZero() || notAfter.IsZero() {
		return fmt.Errorf("crl: record revocation of %s: %w", serial, ErrInvalidTime)
	}
	switch _, err := tx.Record(KindRevoked, serial); {
	case err == nil:
		return nil
	case !errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("crl: record revocation of %s: %w", serial, err)
	}
	em, err := encMode()
	if err != nil {
		return fmt.Errorf("crl: record revocation: %w", err)
	}
	issuer, err := issuerOf(tx, serial)
	if err != nil {
		return fmt.Errorf("crl: record revocation of %s: %w", serial, err)
	}
	val, err := em.Marshal(Revocation{RevokedAt: at.UTC(), Reason: reason, NotAfter: notAfter.UTC(), Issuer: issuer})
	if err != nil {
		return fmt.Errorf("crl: record revocation of %s: %w", serial, err)
	}
	if err := tx.PutRecord(KindRevoked, serial, val); err != nil {
		return fmt.Errorf("crl: record revocation of %s: %w", serial, err)
	}
	return nil
}

// issuerOf returns the hex authority key identifier of the certificate with
// this serial in the registry, "" if it is not there or names none.
func issuerOf(r store.Reader, serial string) (string, error) {
	c, err := r.Certificate(serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", nil
	case err != nil:
		return "", err
	}
	cert, err := x509.ParseCertificate(c.DER)
	if err != nil {
		return "", nil // not ours to judge: listed on every CRL
	}
	return hex.EncodeToString(cert.AuthorityKeyId), nil
}

// Revoked reports whether the certificate with this serial is recorded as
// revoked, and how. An entry dropped after its certificate expired is no
// longer reported.
func Revoked(r store.Reader, serial string) (Revocation, bool, error) {
	val, err := r.Record(KindRevoked, serial)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Revocation{}, false, nil
	case err != nil:
		return Revocation{}, false, fmt.Errorf("crl: revoked %s: %w", serial, err)
	}
	rev, err := decodeRevocation(val)
	if err != nil {
		return Revocation{}, false, fmt.Errorf("crl: revoked %s: %w", serial, err)
	}
	return rev, true, nil
}

func decodeRevocation(val []byte) (Revocation, error) {
	var rev Revocation
	if err := cbor.Unmarshal(val, &rev); err != nil {
		return Revocation{}, fmt.Errorf("%w: %w", ErrCorruptRecord, err)
	}
	if rev.RevokedAt.IsZero() || rev.NotAfter.IsZero() || !validReason(rev.Reason) {
		return Revocation{}, fmt.Errorf("%w: missing time or bad reason %d", ErrCorruptRecord, rev.Reason)
	}
	return rev, nil
}
