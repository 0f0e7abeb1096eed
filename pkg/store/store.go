package store

import (
	"context"
	"errors"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
)

// Errors returned by every backend. Callers compare with errors.Is.
var (
	// ErrNotFound: no record with that key.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a compare-and-swap failed (the record changed since it
	// was read) or a unique index would be violated.
	ErrConflict = errors.New("store: conflict")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
)

// Store is a transactional registry.
type Store interface {
	// View runs fn in a read-only transaction.
	View(ctx context.Context, fn func(Reader) error) error
	// Update runs fn in a read-write transaction and commits it durably if
	// fn returns nil. fn may run more than once; see the package doc.
	Update(ctx context.Context, fn func(Tx) error) error
	// Stats reports the size of the registry.
	Stats(ctx context.Context) (Stats, error)
	Close() error
}

// Stats describes a store's content.
type Stats struct {
	Devices      int   `json:"devices"`
	Certificates int   `json:"certificates"`
	AuditEntries int   `json:"audit_entries"`
	Bytes        int64 `json:"bytes"`
}

// Reader reads the registry inside a transaction.
type Reader interface {
	// Device returns the device with this identifier.
	Device(id string) (device.Device, error)
	// DeviceByIDevIDKey returns the device whose manifest entry names this
	// IDevID key (hex SHA-256 of its SubjectPublicKeyInfo).
	DeviceByIDevIDKey(keySHA256 string) (device.Device, error)
	// Devices calls fn for each device with an identifier greater than
	// after, in identifier order, until fn returns false or an error.
	Devices(after string, fn func(device.Device) (bool, error)) error
	// Certificate returns the certificate with this serial (lower-case hex).
	Certificate(serial string) (device.Certificate, error)
	// CertificatesOf returns every stored certificate of a device, oldest first.
	CertificatesOf(deviceID string) ([]device.Certificate, error)
	// Manufacturer returns a trusted manufacturer by name.
	Manufacturer(name string) (device.Manufacturer, error)
	// Manufacturers returns every trusted manufacturer, sorted by name.
	Manufacturers() ([]device.Manufacturer, error)
	// LastAudit returns the newest audit entry, or the zero Entry if none.
	LastAudit() (audit.Entry, error)
	// Audit calls fn for each audit entry with Seq > after, in order, until
	// fn returns false or an error.
	Audit(after uint64, fn func(audit.Entry) (bool, error)) error
	// Record returns the value stored under key in the named collection of
	// opaque records (used by packages that own their encoding: vulnerability
	// data, transfer records, ...). The value is a copy.
	Record(kind, key string) ([]byte, error)
	// Records calls fn for each record of kind with a key greater than
	// after, in key order, until fn returns false or an error.
	Records(kind, after string, fn func(key string, val []byte) (bool, error)) error
}

// Tx reads and writes the registry inside a read-write transaction.
type Tx interface {
	Reader
	// PutDevice stores d if d.Revision equals the stored revision (0 for a
	// new device) and increments d.Revision; otherwise it returns
	// ErrConflict. It maintains the IDevID key index and refuses (ErrConflict)
	// a key already indexed for another device.
	PutDevice(d *device.Device) error
	// PutCertificate stores or replaces a certificate and indexes it under
	// its device.
	PutCertificate(c device.Certificate) error
	// DeleteCertificate removes a certificate and its index entry.
	DeleteCertificate(serial string) error
	// PutManufacturer stores or replaces a manufacturer.
	PutManufacturer(m device.Manufacturer) error
	// AppendAudit seals e as the successor of the newest entry and stores it.
	AppendAudit(e audit.Entry) (audit.Entry, error)
	// PutRecord stores val under key in the named collection.
	PutRecord(kind, key string, val []byte) error
	// DeleteRecord removes a record; removing a missing one is not an error.
	DeleteRecord(kind, key string) error
}
