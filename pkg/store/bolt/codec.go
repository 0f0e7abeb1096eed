package bolt

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
)

// Bucket names and meta keys.
var (
	bucketDevices     = []byte("devices")
	bucketIDevID      = []byte("idevid")
	bucketCerts       = []byte("certs")
	bucketCertSerials = []byte("cert_serials")
	bucketDeviceCerts = []byte("device_certs")
	bucketMfrs        = []byte("manufacturers")
	bucketAudit       = []byte("audit")
	bucketMeta        = []byte("meta")
	bucketRecords     = []byte("records")

	allBuckets = [][]byte{
		bucketDevices, bucketIDevID, bucketCerts, bucketCertSerials, bucketDeviceCerts,
		bucketMfrs, bucketAudit, bucketMeta, bucketRecords,
	}

	keySchema = []byte("schema")
)

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	// CoreDetEncOptions and DecOptions{} are constants of the cbor
	// package; they cannot fail to build a mode.
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(fmt.Sprintf("bolt: cbor encoder: %v", err))
	}
	if decMode, err = (cbor.DecOptions{}).DecMode(); err != nil {
		panic(fmt.Sprintf("bolt: cbor decoder: %v", err))
	}
}

// seqKey is the key of sequence number seq in the audit and certs buckets:
// big-endian, so that keys sort like numbers and new records go to the end
// of their bucket.
func seqKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)
}

// deviceCertKey is the index key of the certificate stored under seq (its
// certs key) for device id. Device identifiers never contain 0x00 (see
// validID), so a prefix scan of id+0x00 finds exactly that device's
// certificates.
func deviceCertKey(id string, seq []byte) []byte {
	k := make([]byte, 0, len(id)+1+len(seq))
	k = append(k, id...)
	k = append(k, 0)
	return append(k, seq...)
}

func deviceCertPrefix(id string) []byte {
	k := make([]byte, 0, len(id)+1)
	k = append(k, id...)
	return append(k, 0)
}

// The device and audit encoders leave out the field that is the record's
// key, and the decoders put it back: keys are not stored twice.

func encodeDevice(d device.Device) ([]byte, error) {
	d.ID = ""
	return encMode.Marshal(&d)
}

func decodeDevice(key, val []byte) (device.Device, error) {
	var d device.Device
	if err := decMode.Unmarshal(val, &d); err != nil {
		return device.Device{}, fmt.Errorf("decode device %q: %w", key, err)
	}
	d.ID = string(key)
	d.UpdatedAt = utc(d.UpdatedAt)
	d.Provenance.ManufacturedAt = utc(d.Provenance.ManufacturedAt)
	return d, nil
}

func encodeCert(c device.Certificate) ([]byte, error) {
	return encMode.Marshal(&c)
}

func decodeCert(val []byte) (device.Certificate, error) {
	var c device.Certificate
	if err := decMode.Unmarshal(val, &c); err != nil {
		return device.Certificate{}, fmt.Errorf("decode certificate: %w", err)
	}
	c.NotBefore = utc(c.NotBefore)
	c.NotAfter = utc(c.NotAfter)
	c.StatusAt = utc(c.StatusAt)
	return c, nil
}

func encodeManufacturer(m device.Manufacturer) ([]byte, error) {
	return encMode.Marshal(&m)
}

func decodeManufacturer(key, val []byte) (device.Manufacturer, error) {
	var m device.Manufacturer
	if err := decMode.Unmarshal(val, &m); err != nil {
		return device.Manufacturer{}, fmt.Errorf("decode manufacturer %q: %w", key, err)
	}
	m.TrustedAt = utc(m.TrustedAt)
	return m, nil
}

func encodeAudit(e audit.Entry) ([]byte, error) {
	e.Seq = 0
	return encMode.Marshal(&e)
}

func decodeAudit(key, val []byte) (audit.Entry, error) {
	if len(key) != 8 {
		return audit.Entry{}, fmt.Errorf("decode audit entry: key %x is not a sequence number", key)
	}
	var e audit.Entry
	if err := decMode.Unmarshal(val, &e); err != nil {
		return audit.Entry{}, fmt.Errorf("decode audit entry %x: %w", key, err)
	}
	e.Seq = binary.BigEndian.Uint64(key)
	e.Time = utc(e.Time)
	return e, nil
}

// utc returns t in UTC; CBOR epoch times decode in the local zone.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}
