package bolt

import (
	"bytes"
	"fmt"

	bbolt "go.etcd.io/bbolt"

	"github.com/embark-iot/embark/pkg/store"
)

// Records live in nested buckets of the records bucket, one per kind.

func validRecordKey(kind, key string) error {
	switch {
	case kind == "" || len(kind) > 64:
		return fmt.Errorf("%w: record kind %q", ErrInvalid, kind)
	case key == "" || len(key) > 1024:
		return fmt.Errorf("%w: record key of %d bytes", ErrInvalid, len(key))
	}
	return nil
}

func (t *tx) recordBucket(kind string, create bool) (*bbolt.Bucket, error) {
	parent := t.btx.Bucket(bucketRecords)
	if parent == nil {
		return nil, fmt.Errorf("%w: no records bucket", ErrSchema)
	}
	if b := parent.Bucket([]byte(kind)); b != nil || !create {
		return b, nil
	}
	return parent.CreateBucket([]byte(kind))
}

// Record implements store.Reader.
func (t *tx) Record(kind, key string) ([]byte, error) {
	if err := validRecordKey(kind, key); err != nil {
		return nil, err
	}
	b, err := t.recordBucket(kind, false)
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, fmt.Errorf("%w: record %s/%s", store.ErrNotFound, kind, key)
	}
	v := b.Get([]byte(key))
	if v == nil {
		return nil, fmt.Errorf("%w: record %s/%s", store.ErrNotFound, kind, key)
	}
	return bytes.Clone(v), nil
}

// Records implements store.Reader.
func (t *tx) Records(kind, after string, fn func(key string, val []byte) (bool, error)) error {
	if kind == "" || len(kind) > 64 {
		return fmt.Errorf("%w: record kind %q", ErrInvalid, kind)
	}
	b, err := t.recordBucket(kind, false)
	if err != nil || b == nil {
		return err
	}
	c := b.Cursor()
	k, v := c.First()
	if after != "" {
		k, v = c.Seek([]byte(after))
		if k != nil && string(k) == after {
			k, v = c.Next()
		}
	}
	for ; k != nil; k, v = c.Next() {
		more, err := fn(string(k), bytes.Clone(v))
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// PutRecord implements store.Tx.
func (t *tx) PutRecord(kind, key string, val []byte) error {
	if err := validRecordKey(kind, key); err != nil {
		return err
	}
	b, err := t.recordBucket(kind, true)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), bytes.Clone(val))
}

// DeleteRecord implements store.Tx.
func (t *tx) DeleteRecord(kind, key string) error {
	if err := validRecordKey(kind, key); err != nil {
		return err
	}
	b, err := t.recordBucket(kind, false)
	if err != nil || b == nil {
		return err
	}
	return b.Delete([]byte(key))
}
