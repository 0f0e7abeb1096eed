package bolt

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// tx implements store.Reader and store.Tx over one bbolt transaction.
// Everything it returns is decoded, so no slice of bbolt's memory map
// escapes the transaction.
type tx struct {
	btx  *bbolt.Tx
	undo *undoLog // revisions written back by PutDevice; nil in View
}

var _ store.Tx = (*tx)(nil)

// auditBucket returns the audit bucket set up for appends: its keys only
// grow, so split pages are filled completely instead of half.
func (t *tx) auditBucket() *bbolt.Bucket {
	b := t.btx.Bucket(bucketAudit)
	b.FillPercent = 1.0
	return b
}

// devicesFillPercent is how full the devices bucket's pages are left when
// they split. Devices are imported in identifier order, so the split pages
// stay as left; a record grows by about a third between import and its
// first renewal (state, zone, current and previous serials), which the
// remaining quarter of each page absorbs without splitting it again.
const devicesFillPercent = 0.75

// devicesBucket returns the devices bucket with its fill percentage set.
func (t *tx) devicesBucket() *bbolt.Bucket {
	b := t.btx.Bucket(bucketDevices)
	b.FillPercent = devicesFillPercent
	return b
}

// validID checks a device identifier used as a key.
func validID(id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%w: empty device id", ErrInvalid)
	case len(id) > 1024:
		return fmt.Errorf("%w: device id of %d bytes", ErrInvalid, len(id))
	case strings.IndexByte(id, 0) >= 0:
		return fmt.Errorf("%w: device id %q contains NUL", ErrInvalid, id)
	}
	return nil
}

// validSerial checks a certificate serial: lower-case hex.
func validSerial(serial string) error {
	if serial == "" || len(serial) > 128 {
		return fmt.Errorf("%w: serial %q: want 1 to 128 lower-case hex digits", ErrInvalid, serial)
	}
	for i := 0; i < len(serial); i++ {
		if c := serial[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return fmt.Errorf("%w: serial %q: want lower-case hex", ErrInvalid, serial)
		}
	}
	return nil
}

// Device implements store.Reader.
func (t *tx) Device(id string) (device.Device, error) {
	v := t.btx.Bucket(bucketDevices).Get([]byte(id))
	if v == nil {
		return device.Device{}, fmt.Errorf("bolt: device %q: %w", id, store.ErrNotFound)
	}
	d, err := decodeDevice([]byte(id), v)
	if err != nil {
		return device.Device{}, fmt.Errorf("bolt: %w", err)
	}
	return d, nil
}

// DeviceByIDevIDKey implements store.Reader.
func (t *tx) DeviceByIDevIDKey(keySHA256 string) (device.Device, error) {
	if keySHA256 == "" {
		return device.Device{}, fmt.Errorf("bolt: device with empty IDevID key: %w", store.ErrNotFound)
	}
	id := t.btx.Bucket(bucketIDevID).Get([]byte(keySHA256))
	if id == nil {
		return device.Device{}, fmt.Errorf("bolt: device with IDevID key %s: %w", keySHA256, store.ErrNotFound)
	}
	return t.Device(string(id))
}

// Devices implements store.Reader.
func (t *tx) Devices(after string, fn func(device.Device) (bool, error)) error {
	c := t.btx.Bucket(bucketDevices).Cursor()
	var k, v []byte
	if after == "" {
		k, v = c.First()
	} else {
		k, v = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		d, err := decodeDevice(k, v)
		if err != nil {
			return fmt.Errorf("bolt: %w", err)
		}
		more, err := fn(d)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// certsBucket returns the certs bucket set up for appends: its keys are
// sequence numbers, so split pages are filled completely instead of half.
// Certificates replaced later (status changes) grow by a few bytes, which
// the room left by the ~700-byte records on each page absorbs.
func (t *tx) certsBucket() *bbolt.Bucket {
	b := t.btx.Bucket(bucketCerts)
	b.FillPercent = 1.0
	return b
}

// certBySerial returns the certs key and the record of a certificate, or a
// nil key if there is none.
func (t *tx) certBySerial(serial string) ([]byte, device.Certificate, error) {
	seq := t.btx.Bucket(bucketCertSerials).Get([]byte(serial))
	if seq == nil {
		return nil, device.Certificate{}, nil
	}
	seq = bytes.Clone(seq)
	v := t.btx.Bucket(bucketCerts).Get(seq)
	if v == nil {
		return nil, device.Certificate{}, fmt.Errorf("certificate %s: serial index names missing record %x", serial, seq)
	}
	c, err := decodeCert(v)
	if err != nil {
		return nil, device.Certificate{}, fmt.Errorf("certificate %s: %w", serial, err)
	}
	return seq, c, nil
}

// Certificate implements store.Reader.
func (t *tx) Certificate(serial string) (device.Certificate, error) {
	seq, c, err := t.certBySerial(serial)
	switch {
	case err != nil:
		return device.Certificate{}, fmt.Errorf("bolt: %w", err)
	case seq == nil:
		return device.Certificate{}, fmt.Errorf("bolt: certificate %s: %w", serial, store.ErrNotFound)
	}
	return c, nil
}

// CertificatesOf implements store.Reader. A device without certificates,
// or an unknown one, has none: the result is empty, not an error.
func (t *tx) CertificatesOf(deviceID string) ([]device.Certificate, error) {
	prefix := deviceCertPrefix(deviceID)
	certs := t.btx.Bucket(bucketCerts)
	var out []device.Certificate
	c := t.btx.Bucket(bucketDeviceCerts).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		seq := k[len(prefix):]
		v := certs.Get(seq)
		if v == nil {
			return nil, fmt.Errorf("bolt: certificates of device %q: index names missing record %x", deviceID, seq)
		}
		cert, err := decodeCert(v)
		if err != nil {
			return nil, fmt.Errorf("bolt: certificates of device %q: %w", deviceID, err)
		}
		out = append(out, cert)
	}
	slices.SortFunc(out, func(a, b device.Certificate) int {
		if c := a.NotBefore.Compare(b.NotBefore); c != 0 {
			return c
		}
		return strings.Compare(a.Serial, b.Serial)
	})
	return out, nil
}

// Manufacturer implements store.Reader.
func (t *tx) Manufacturer(name string) (device.Manufacturer, error) {
	v := t.btx.Bucket(bucketMfrs).Get([]byte(name))
	if v == nil {
		return device.Manufacturer{}, fmt.Errorf("bolt: manufacturer %q: %w", name, store.ErrNotFound)
	}
	m, err := decodeManufacturer([]byte(name), v)
	if err != nil {
		return device.Manufacturer{}, fmt.Errorf("bolt: %w", err)
	}
	return m, nil
}

// Manufacturers implements store.Reader.
func (t *tx) Manufacturers() ([]device.Manufacturer, error) {
	var out []device.Manufacturer
	err := t.btx.Bucket(bucketMfrs).ForEach(func(k, v []byte) error {
		m, err := decodeManufacturer(k, v)
		if err != nil {
			return fmt.Errorf("bolt: %w", err)
		}
		out = append(out, m)
		return nil
	})
	return out, err
}

// LastAudit implements store.Reader.
func (t *tx) LastAudit() (audit.Entry, error) {
	k, v := t.btx.Bucket(bucketAudit).Cursor().Last()
	if k == nil {
		return audit.Entry{}, nil
	}
	e, err := decodeAudit(k, v)
	if err != nil {
		return audit.Entry{}, fmt.Errorf("bolt: %w", err)
	}
	return e, nil
}

// Audit implements store.Reader.
func (t *tx) Audit(after uint64, fn func(audit.Entry) (bool, error)) error {
	if after == math.MaxUint64 {
		return nil
	}
	c := t.btx.Bucket(bucketAudit).Cursor()
	for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
		e, err := decodeAudit(k, v)
		if err != nil {
			return fmt.Errorf("bolt: %w", err)
		}
		more, err := fn(e)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// PutDevice implements store.Tx. Every check happens before the first
// write, so a refused PutDevice leaves the transaction as it was.
func (t *tx) PutDevice(d *device.Device) error {
	if d == nil {
		return fmt.Errorf("bolt: put device: %w: nil device", ErrInvalid)
	}
	if err := validID(d.ID); err != nil {
		return fmt.Errorf("bolt: put device: %w", err)
	}
	devices := t.devicesBucket()
	index := t.btx.Bucket(bucketIDevID)
	key := []byte(d.ID)

	var oldKey string
	switch v := devices.Get(key); {
	case v == nil && d.Revision != 0:
		return fmt.Errorf("bolt: put device %q: revision %d but no stored device: %w", d.ID, d.Revision, store.ErrConflict)
	case v == nil:
	case d.Revision == 0:
		return fmt.Errorf("bolt: put device %q: new device but the id exists: %w", d.ID, store.ErrConflict)
	default:
		old, err := decodeDevice(key, v)
		if err != nil {
			return fmt.Errorf("bolt: put device: %w", err)
		}
		if old.Revision != d.Revision {
			return fmt.Errorf("bolt: put device %q: revision %d, stored %d: %w", d.ID, d.Revision, old.Revision, store.ErrConflict)
		}
		oldKey = old.Provenance.IDevIDKeySHA256
	}

	newKey := d.Provenance.IDevIDKeySHA256
	if newKey != "" && newKey != oldKey {
		if owner := index.Get([]byte(newKey)); owner != nil && string(owner) != d.ID {
			return fmt.Errorf("bolt: put device %q: IDevID key %s already belongs to device %q: %w", d.ID, newKey, owner, store.ErrConflict)
		}
	}

	rec := *d
	rec.Revision++
	val, err := encodeDevice(rec)
	if err != nil {
		return fmt.Errorf("bolt: put device %q: encode: %w", d.ID, err)
	}

	if oldKey != "" && oldKey != newKey {
		if err := index.Delete([]byte(oldKey)); err != nil {
			return fmt.Errorf("bolt: put device %q: %w", d.ID, err)
		}
	}
	if newKey != "" && newKey != oldKey {
		if err := index.Put([]byte(newKey), key); err != nil {
			return fmt.Errorf("bolt: put device %q: %w", d.ID, err)
		}
	}
	if err := devices.Put(key, val); err != nil {
		return fmt.Errorf("bolt: put device %q: %w", d.ID, err)
	}
	if t.undo != nil {
		t.undo.record(d, d.Revision)
	}
	d.Revision = rec.Revision
	return nil
}

// PutCertificate implements store.Tx. A new certificate gets the next
// sequence number of the certs bucket; a replaced one keeps its own, and
// moves its index entry if its device changed.
func (t *tx) PutCertificate(c device.Certificate) error {
	if err := validSerial(c.Serial); err != nil {
		return fmt.Errorf("bolt: put certificate: %w", err)
	}
	if err := validID(c.DeviceID); err != nil {
		return fmt.Errorf("bolt: put certificate %s: %w", c.Serial, err)
	}
	seq, old, err := t.certBySerial(c.Serial)
	if err != nil {
		return fmt.Errorf("bolt: put certificate: %w", err)
	}
	val, err := encodeCert(c)
	if err != nil {
		return fmt.Errorf("bolt: put certificate %s: encode: %w", c.Serial, err)
	}
	certs := t.certsBucket()
	index := t.btx.Bucket(bucketDeviceCerts)
	if seq == nil {
		n, err := certs.NextSequence()
		if err != nil {
			return fmt.Errorf("bolt: put certificate %s: %w", c.Serial, err)
		}
		seq = seqKey(n)
		if err := t.btx.Bucket(bucketCertSerials).Put([]byte(c.Serial), seq); err != nil {
			return fmt.Errorf("bolt: put certificate %s: %w", c.Serial, err)
		}
	}
	if old.DeviceID != "" && old.DeviceID != c.DeviceID {
		if err := index.Delete(deviceCertKey(old.DeviceID, seq)); err != nil {
			return fmt.Errorf("bolt: put certificate %s: %w", c.Serial, err)
		}
	}
	if old.DeviceID != c.DeviceID {
		if err := index.Put(deviceCertKey(c.DeviceID, seq), nil); err != nil {
			return fmt.Errorf("bolt: put certificate %s: %w", c.Serial, err)
		}
	}
	if err := certs.Put(seq, val); err != nil {
		return fmt.Errorf("bolt: put certificate %s: %w", c.Serial, err)
	}
	return nil
}

// DeleteCertificate implements store.Tx.
func (t *tx) DeleteCertificate(serial string) error {
	seq, c, err := t.certBySerial(serial)
	switch {
	case err != nil:
		return fmt.Errorf("bolt: delete certificate: %w", err)
	case seq == nil:
		return fmt.Errorf("bolt: delete certificate %s: %w", serial, store.ErrNotFound)
	}
	if err := t.btx.Bucket(bucketDeviceCerts).Delete(deviceCertKey(c.DeviceID, seq)); err != nil {
		return fmt.Errorf("bolt: delete certificate %s: %w", serial, err)
	}
	if err := t.btx.Bucket(bucketCertSerials).Delete([]byte(serial)); err != nil {
		return fmt.Errorf("bolt: delete certificate %s: %w", serial, err)
	}
	if err := t.certsBucket().Delete(seq); err != nil {
		return fmt.Errorf("bolt: delete certificate %s: %w", serial, err)
	}
	return nil
}

// PutManufacturer implements store.Tx.
func (t *tx) PutManufacturer(m device.Manufacturer) error {
	if m.Name == "" || len(m.Name) > 1024 {
		return fmt.Errorf("bolt: put manufacturer: %w: name %q", ErrInvalid, m.Name)
	}
	val, err := encodeManufacturer(m)
	if err != nil {
		return fmt.Errorf("bolt: put manufacturer %q: encode: %w", m.Name, err)
	}
	if err := t.btx.Bucket(bucketMfrs).Put([]byte(m.Name), val); err != nil {
		return fmt.Errorf("bolt: put manufacturer %q: %w", m.Name, err)
	}
	return nil
}

// AppendAudit implements store.Tx.
func (t *tx) AppendAudit(e audit.Entry) (audit.Entry, error) {
	b := t.auditBucket()
	var prev audit.Entry
	if k, v := b.Cursor().Last(); k != nil {
		var err error
		if prev, err = decodeAudit(k, v); err != nil {
			return audit.Entry{}, fmt.Errorf("bolt: append audit: %w", err)
		}
	}
	sealed := audit.Seal(prev, e)
	val, err := encodeAudit(sealed)
	if err != nil {
		return audit.Entry{}, fmt.Errorf("bolt: append audit: encode: %w", err)
	}
	if err := b.Put(seqKey(sealed.Seq), val); err != nil {
		return audit.Entry{}, fmt.Errorf("bolt: append audit %d: %w", sealed.Seq, err)
	}
	return sealed, nil
}
