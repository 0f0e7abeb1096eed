package masa

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// logRecord is one line of the voucher log.
type logRecord struct {
	Time time.Time `json:"time"`
	// Event is "voucher", "refused", "registration" or "registration_refused".
	Event         string    `json:"event"`
	Serial        string    `json:"serial,omitempty"`
	Registrar     string    `json:"registrar,omitempty"`
	RegistrarCert string    `json:"registrar_cert_sha256,omitempty"`
	Owner         string    `json:"owner,omitempty"`
	OwnerKey      string    `json:"owner_key,omitempty"`
	Domain        string    `json:"domain_ca_sha256,omitempty"`
	Nonce         string    `json:"nonce,omitempty"`
	Nonceless     bool      `json:"nonceless,omitempty"`
	ExpiresOn     time.Time `json:"expires_on,omitzero"`
	Assertion     string    `json:"assertion,omitempty"`
	Voucher       string    `json:"voucher_sha256,omitempty"`
	Reason        string    `json:"reason,omitempty"`
	Message       string    `json:"message,omitempty"`
	TLS           string    `json:"tls,omitempty"`
	Remote        string    `json:"remote,omitempty"`
}

// voucherLog appends JSON lines to a file, one write per record.
type voucherLog struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func openLog(path string) (*voucherLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("masa: log: %w", err)
	}
	return &voucherLog{f: f, w: bufio.NewWriter(f)}, nil
}

func (l *voucherLog) write(r logRecord) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(append(b, '\n'))
	_ = l.w.Flush()
}

func (l *voucherLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.w.Flush()
	return l.f.Close()
}
