package fleet

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
)

// StateRecord is one line of a state file: a device and its current
// LDevID. KeyPEM and CertPEM load with tls.X509KeyPair.
type StateRecord struct {
	Serial string `json:"serial"`
	// KeyPEM is the LDevID private key, PKCS#8 ("PRIVATE KEY").
	KeyPEM string `json:"key_pem"`
	// CertPEM is the LDevID followed by the intermediates.
	CertPEM string `json:"cert_pem"`
	// Applied is the last command generation the device applied, Zone
	// the zone the commands named (stay only).
	Applied uint64 `json:"applied,omitempty"`
	Zone    string `json:"zone,omitempty"`
}

// stateOf makes a record for every device that holds an LDevID, with its
// own chain if its answer gave one, else intermediates.
func stateOf(devs []*simDevice, intermediates [][]byte) []StateRecord {
	var out []StateRecord
	for _, d := range devs {
		if d.ldevid == nil {
			continue
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(d.ldevidKey)
		if err != nil {
			continue
		}
		var certs bytes.Buffer
		_ = pem.Encode(&certs, &pem.Block{Type: "CERTIFICATE", Bytes: d.ldevid.Raw})
		chain := intermediates
		if d.ldevidChain != nil {
			chain = rawsOf(d.ldevidChain)
		}
		for _, der := range chain {
			_ = pem.Encode(&certs, &pem.Block{Type: "CERTIFICATE", Bytes: der})
		}
		out = append(out, StateRecord{
			Serial:  d.serial,
			KeyPEM:  string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})),
			CertPEM: certs.String(),
			Applied: d.applied,
			Zone:    d.zone,
		})
	}
	return out
}

// WriteState writes records as JSON lines to path, readable by the owner
// only, replacing the file at once.
func WriteState(path string, records []StateRecord) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("fleet: state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("fleet: state: %w", err)
	}
	w := bufio.NewWriter(tmp)
	enc := json.NewEncoder(w)
	for _, rec := range records {
		if err := enc.Encode(rec); err != nil {
			_ = tmp.Close()
			return fmt.Errorf("fleet: state: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("fleet: state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("fleet: state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fleet: state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("fleet: state: %w", err)
	}
	return nil
}

// ReadState reads a state file written by WriteState.
func ReadState(path string) ([]StateRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("fleet: state: %w", err)
	}
	defer f.Close()
	var out []StateRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var rec StateRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("fleet: state: %s:%d: %w", path, line, err)
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("fleet: state: %w", err)
	}
	return out, nil
}
