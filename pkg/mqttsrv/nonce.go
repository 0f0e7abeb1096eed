package mqttsrv

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/embark-iot/embark/pkg/mqttwire"
	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store"
)

// Record kinds this package keeps in the registry.
const (
	kindSecret    = "mqtt.secret"
	kindNonceUsed = "mqtt.nonce"
	keyNonceMAC   = "nonce-mac"
)

// Nonce layout: random (16) ‖ expiry, Unix seconds (8) ‖ MAC (16).
const (
	nonceRandom = 16
	nonceMAC    = mqttwire.NonceSize - nonceRandom - 8
)

// Nonces issues and consumes single-use nonces. A nonce is bound to one
// device and carries its expiry under a MAC, so issuing one writes nothing;
// using one records it in the registry until it expires, so that it is
// accepted once even across restarts.
type Nonces struct {
	st    store.Store
	key   []byte
	ttl   time.Duration
	clock func() time.Time
}

// NewNonces loads (or creates, on first use) the MAC key kept in the
// registry.
func NewNonces(ctx context.Context, st store.Store, ttl time.Duration, clock func() time.Time) (*Nonces, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("mqttsrv: nonce lifetime %s must be positive", ttl)
	}
	var key []byte
	err := st.Update(ctx, func(tx store.Tx) error {
		k, err := tx.Record(kindSecret, keyNonceMAC)
		if err == nil {
			key = k
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		k = make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return err
		}
		key = k
		return tx.PutRecord(kindSecret, keyNonceMAC, k)
	})
	if err != nil {
		return nil, fmt.Errorf("mqttsrv: nonce key: %w", err)
	}
	if len(key) != 32 {
		return nil, fmt.Errorf("mqttsrv: nonce key of %d bytes in the registry, want 32", len(key))
	}
	return &Nonces{st: st, key: key, ttl: ttl, clock: clock}, nil
}

// TTL is how long a nonce stays valid.
func (n *Nonces) TTL() time.Duration { return n.ttl }

// Issue returns a fresh nonce for a device.
func (n *Nonces) Issue(deviceID string) ([]byte, error) {
	b := make([]byte, mqttwire.NonceSize)
	if _, err := rand.Read(b[:nonceRandom]); err != nil {
		return nil, err
	}
	binary.BigEndian.PutUint64(b[nonceRandom:], uint64(n.clock().Add(n.ttl).Unix()))
	copy(b[nonceRandom+8:], n.mac(deviceID, b[:nonceRandom+8]))
	return b, nil
}

func (n *Nonces) mac(deviceID string, body []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("embark-mqtt-nonce\x00"))
	m.Write([]byte(deviceID))
	m.Write([]byte{0})
	m.Write(body)
	return m.Sum(nil)[:nonceMAC]
}

// Check verifies that b is a nonce issued to deviceID and not expired,
// without using it up.
func (n *Nonces) Check(deviceID string, b []byte) (expiry time.Time, err error) {
	if len(b) != mqttwire.NonceSize || !hmac.Equal(b[nonceRandom+8:], n.mac(deviceID, b[:nonceRandom+8])) {
		return time.Time{}, &onboard.Error{Reason: onboard.ReasonUnknownNonce, Msg: "the nonce was not issued to this device"}
	}
	expiry = time.Unix(int64(binary.BigEndian.Uint64(b[nonceRandom:])), 0)
	if !n.clock().Before(expiry) {
		return time.Time{}, &onboard.Error{Reason: onboard.ReasonExpiredNonce,
			Msg: fmt.Sprintf("the nonce expired at %s: ask for a new one", expiry.UTC().Format(time.RFC3339))}
	}
	return expiry, nil
}

// Consume checks a nonce and records it as used, durably, in one
// transaction: a second use is refused as a replay.
func (n *Nonces) Consume(ctx context.Context, deviceID string, b []byte) error {
	expiry, err := n.Check(deviceID, b)
	if err != nil {
		return err
	}
	key := hex.EncodeToString(b[:nonceRandom])
	var exp [8]byte
	binary.BigEndian.PutUint64(exp[:], uint64(expiry.Unix()))
	err = n.st.Update(ctx, func(tx store.Tx) error {
		if _, err := tx.Record(kindNonceUsed, key); err == nil {
			return errReplayed
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return tx.PutRecord(kindNonceUsed, key, exp[:])
	})
	if errors.Is(err, errReplayed) {
		return &onboard.Error{Reason: onboard.ReasonReplayed, Msg: "the nonce was used already: ask for a new one"}
	}
	if err != nil {
		return fmt.Errorf("mqttsrv: record nonce: %w", err)
	}
	return nil
}

var errReplayed = errors.New("nonce used")

// Sweep forgets used nonces that have expired (they would be refused as
// expired anyway). It returns how many it removed.
func (n *Nonces) Sweep(ctx context.Context) (int, error) {
	now := n.clock().Unix()
	var stale []string
	err := n.st.View(ctx, func(r store.Reader) error {
		return r.Records(kindNonceUsed, "", func(key string, val []byte) (bool, error) {
			if len(val) != 8 || int64(binary.BigEndian.Uint64(val)) <= now {
				stale = append(stale, key)
			}
			return true, nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("mqttsrv: sweep nonces: %w", err)
	}
	removed := len(stale)
	for len(stale) > 0 {
		batch := stale[:min(len(stale), 1000)]
		stale = stale[len(batch):]
		err := n.st.Update(ctx, func(tx store.Tx) error {
			for _, k := range batch {
				if err := tx.DeleteRecord(kindNonceUsed, k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("mqttsrv: sweep nonces: %w", err)
		}
	}
	return removed, nil
}
