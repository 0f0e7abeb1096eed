package auditlog

import (
	"fmt"
	"strconv"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/store"
)

// Record kinds in the store's opaque records.
const (
	// CheckpointKind holds signed checkpoints (audit.SignedCheckpoint
	// Marshal) under [CheckpointKey] of the entry they sign.
	CheckpointKind = "audit-checkpoint"
	// KeyKind holds the public keys (hybridsig encoding) that signed
	// checkpoints, under their KeyID.
	KeyKind = "audit-key"
)

// CheckpointKey is the record key of the checkpoint of entry seq: 20
// decimal digits, so that keys sort like sequence numbers.
func CheckpointKey(seq uint64) string { return fmt.Sprintf("%020d", seq) }

// parseCheckpointKey is the inverse of CheckpointKey.
func parseCheckpointKey(k string) (uint64, error) {
	if len(k) != 20 {
		return 0, fmt.Errorf("%w: checkpoint record key %q", ErrRecord, k)
	}
	n, err := strconv.ParseUint(k, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: checkpoint record key %q", ErrRecord, k)
	}
	return n, nil
}

// storedCheckpoint is one checkpoint record.
type storedCheckpoint struct {
	at  uint64
	sc  audit.SignedCheckpoint
	raw []byte // the record as stored
	err error  // the record does not decode
}

// readCheckpoints calls fn for every checkpoint record after entry after,
// in order, until fn returns false.
func readCheckpoints(rd store.Reader, after uint64, fn func(storedCheckpoint) bool) error {
	start := ""
	if after > 0 {
		start = CheckpointKey(after)
	}
	return rd.Records(CheckpointKind, start, func(k string, v []byte) (bool, error) {
		at, err := parseCheckpointKey(k)
		if err != nil {
			return false, err
		}
		sc, err := audit.ParseSignedCheckpoint(v)
		return fn(storedCheckpoint{at: at, sc: sc, raw: v, err: err}), nil
	})
}

// readKeys returns the public keys stored under KeyKind.
func readKeys(rd store.Reader) ([]*hybridsig.PublicKey, error) {
	var keys []*hybridsig.PublicKey
	err := rd.Records(KeyKind, "", func(id string, v []byte) (bool, error) {
		k, err := hybridsig.ParsePublicKey(v)
		if err != nil {
			return false, fmt.Errorf("%w: key %s: %w", ErrRecord, id, err)
		}
		if k.KeyID() != id {
			return false, fmt.Errorf("%w: key stored as %s is %s", ErrRecord, id, k.KeyID())
		}
		keys = append(keys, k)
		return true, nil
	})
	return keys, err
}
