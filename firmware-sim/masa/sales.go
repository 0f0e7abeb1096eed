package masa

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
)

// sale is one sales record: who bought a serial, and the IDevID key the
// factory put in it.
type sale struct {
	owner    string
	ownerKey string // hybridsig KeyID, "" if the record names only the owner
	idevid   string // hex SHA-256 of the IDevID's SubjectPublicKeyInfo
}

// salesRecords are the sales of one manifest revision.
type salesRecords struct {
	bySerial map[string]sale
	revision uint64
	modTime  time.Time
}

// loadSales reads the factory's manifest, verified with its own signing
// key, into sales records.
func loadSales(dir string, signer *hybridsig.PublicKey) (*salesRecords, error) {
	path := filepath.Join(dir, factory.ManifestFile)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSales, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSales, err)
	}
	m, err := manifest.VerifyReader(f, func(id string) (*hybridsig.PublicKey, bool) { return signer, id == signer.KeyID() },
		manifest.WithTempDir(dir))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSales, path, err)
	}
	defer m.Close()
	s := &salesRecords{bySerial: make(map[string]sale, m.Len()), revision: m.Header().Revision, modTime: st.ModTime()}
	err = m.Entries(func(_ int, e manifest.Entry) error {
		s.bySerial[e.Serial] = sale{owner: e.Owner, ownerKey: e.OwnerKey, idevid: e.IDevIDKeySHA256}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSales, err)
	}
	return s, nil
}
