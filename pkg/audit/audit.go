package audit

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Entry is one audit record.
type Entry struct {
	Seq  uint64    `cbor:"1,keyasint" json:"seq"`
	Time time.Time `cbor:"2,keyasint" json:"time"`
	// Actor is who or what caused the event: "device", "operator", "system".
	Actor string `cbor:"3,keyasint" json:"actor"`
	// Action is what happened: "enroll", "renew", "refuse", "import", ...
	Action   string `cbor:"4,keyasint" json:"action"`
	DeviceID string `cbor:"5,keyasint,omitempty" json:"device_id,omitempty"`
	// Outcome is "ok" or a reason code.
	Outcome string `cbor:"6,keyasint" json:"outcome"`
	Detail  string `cbor:"7,keyasint,omitempty" json:"detail,omitempty"`
	// Cert is the serial of the certificate concerned, if any.
	Cert string `cbor:"8,keyasint,omitempty" json:"cert,omitempty"`
	// Policy names the policy version and rule that decided, if any.
	Policy   string `cbor:"9,keyasint,omitempty" json:"policy,omitempty"`
	PrevHash []byte `cbor:"10,keyasint" json:"prev_hash"`
	Hash     []byte `cbor:"11,keyasint" json:"hash"`
}

var encMode = func() cbor.EncMode {
	m, err := cbor.CoreDetEncOptions().EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// hashOf computes the hash of e, which covers every field but Hash.
func hashOf(e Entry) []byte {
	e.Hash = nil
	b, err := encMode.Marshal(e)
	if err != nil {
		// Entry holds only encodable types; this cannot happen.
		panic(fmt.Sprintf("audit: encode: %v", err))
	}
	h := sha256.Sum256(b)
	return h[:]
}

// Seal returns e as the successor of prev (the zero Entry for the first
// entry): its sequence number, previous hash and hash filled in.
func Seal(prev, e Entry) Entry {
	e.Seq = prev.Seq + 1
	e.PrevHash = prev.Hash
	if e.PrevHash == nil {
		e.PrevHash = []byte{}
	}
	e.Hash = hashOf(e)
	return e
}

// ErrBroken is returned by VerifyChain for the first entry that does not
// follow from its predecessor.
var ErrBroken = errors.New("audit: chain broken")

// VerifyChain checks that entries, in order, form an unbroken chain starting
// after prev (the zero Entry to verify from the start).
func VerifyChain(prev Entry, entries []Entry) error {
	for _, e := range entries {
		if err := Follows(prev, e); err != nil {
			return err
		}
		prev = e
	}
	return nil
}

// Follows reports whether e is a valid successor of prev.
func Follows(prev, e Entry) error {
	switch {
	case e.Seq != prev.Seq+1:
		return fmt.Errorf("%w at entry %d: sequence follows %d", ErrBroken, e.Seq, prev.Seq)
	case !bytes.Equal(e.PrevHash, prev.Hash) && !(len(e.PrevHash) == 0 && len(prev.Hash) == 0):
		return fmt.Errorf("%w at entry %d: previous hash does not match entry %d", ErrBroken, e.Seq, prev.Seq)
	case !bytes.Equal(e.Hash, hashOf(e)):
		return fmt.Errorf("%w at entry %d: content does not match its hash", ErrBroken, e.Seq)
	}
	return nil
}
