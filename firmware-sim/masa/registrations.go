package masa

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/embark-iot/embark/pkg/hybridsig"
)

// RegistrationsFile keeps the owners' registrations in the factory
// directory.
const RegistrationsFile = "masa-registrations.json"

// registration is an owner's registered domain.
type registration struct {
	owner     string
	key       *hybridsig.PublicKey
	domainCA  *x509.Certificate
	createdOn time.Time
	at        time.Time
	// pool holds domainCA alone, to verify registrar and server chains.
	pool *x509.CertPool
}

func newRegistration(owner string, key *hybridsig.PublicKey, ca *x509.Certificate, created, at time.Time) *registration {
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return &registration{owner: owner, key: key, domainCA: ca, createdOn: created, at: at, pool: pool}
}

type registrationRecord struct {
	Owner        string    `json:"owner"`
	OwnerKey     string    `json:"owner_key"` // PEM
	DomainCA     string    `json:"domain_ca"` // PEM
	CreatedOn    time.Time `json:"created_on"`
	RegisteredAt time.Time `json:"registered_at"`
}

// domainSHA256 is the hex SHA-256 of the domain CA certificate.
func (r *registration) domainSHA256() string {
	sum := sha256.Sum256(r.domainCA.Raw)
	return hex.EncodeToString(sum[:])
}

func loadRegistrations(path string) (map[string]*registration, error) {
	out := map[string]*registration{}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("masa: registrations: %w", err)
	}
	var recs []registrationRecord
	if err := json.Unmarshal(b, &recs); err != nil {
		return nil, fmt.Errorf("masa: %s: %w", path, err)
	}
	for _, rec := range recs {
		key, err := hybridsig.ParsePublicKeyPEM([]byte(rec.OwnerKey))
		if err != nil {
			return nil, fmt.Errorf("masa: %s: owner key of %q: %w", path, rec.Owner, err)
		}
		block, _ := pem.Decode([]byte(rec.DomainCA))
		if block == nil {
			return nil, fmt.Errorf("masa: %s: domain CA of %q is not PEM", path, rec.Owner)
		}
		ca, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("masa: %s: domain CA of %q: %w", path, rec.Owner, err)
		}
		out[key.KeyID()] = newRegistration(rec.Owner, key, ca, rec.CreatedOn, rec.RegisteredAt)
	}
	return out, nil
}

func saveRegistrations(path string, regs map[string]*registration) error {
	recs := make([]registrationRecord, 0, len(regs))
	for _, r := range regs {
		recs = append(recs, registrationRecord{
			Owner:        r.owner,
			OwnerKey:     string(hybridsig.MarshalPublicKeyPEM(r.key)),
			DomainCA:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.domainCA.Raw})),
			CreatedOn:    r.createdOn,
			RegisteredAt: r.at,
		})
	}
	b, err := json.MarshalIndent(recs, "", "  ")
	if err != nil {
		return fmt.Errorf("masa: registrations: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".registrations-*")
	if err != nil {
		return fmt.Errorf("masa: registrations: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("masa: registrations: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("masa: registrations: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("masa: registrations: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("masa: registrations: %w", err)
	}
	return nil
}
