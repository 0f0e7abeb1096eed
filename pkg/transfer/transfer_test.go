package transfer

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/manifest"
	"github.com/embark-iot/embark/pkg/owner"
	"github.com/embark-iot/embark/pkg/store"
)

// TestCreateAccept sells devices from alpha to beta and checks both
// registries.
func TestCreateAccept(t *testing.T) {
	ctx := context.Background()
	o := newOwners(t)
	tests := []struct {
		name     string
		id       string
		nameOnly bool
	}{
		{"ok/owner-named-by-key", keyedID, false},
		{"ok/owner-named-by-name-only", namedID, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seller, buyer := newRegistry(t, o), newRegistry(t, o)
			usable := enroll(t, seller, tt.id)
			exp, err := Create(ctx, seller, o.alpha, tt.id, "beta", o.beta.KeyID(), now, WithActor("operator:alice"))
			if err != nil {
				t.Fatal(err)
			}
			want := Result{DeviceID: tt.id, Seq: 1, From: "alpha", FromKey: o.alpha.KeyID(), To: "beta", ToKey: o.beta.KeyID(),
				Revoked: usable, State: device.Transferred}
			if !equalResult(exp.Result, want) {
				t.Fatalf("create result %+v, want %+v", exp.Result, want)
			}
			if len(exp.Chain) != 1 || !bytes.Equal(exp.Chain[0], exp.Envelope) {
				t.Fatalf("chain of %d records", len(exp.Chain))
			}
			rec, err := Open(exp.Envelope)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Seq != 1 || rec.From.Name != "alpha" || rec.FromKeyID != o.alpha.KeyID() || rec.To != (To{Name: "beta", KeyID: o.beta.KeyID()}) ||
				rec.DeviceID() != tt.id || rec.IDevIDKeySHA256 != idevKey(rec.Serial) || !rec.Created.Equal(now) {
				t.Fatalf("record %+v", rec.Record)
			}

			// The seller's registry: transferred, credentials revoked.
			d, certs := getDevice(t, seller, tt.id)
			if d.State != device.Transferred || d.Zone != "" || d.Cause != "operator:alice" ||
				d.Provenance.Owner != "beta" || d.Provenance.OwnerKey != o.beta.KeyID() || d.Provenance.Transfers != 1 {
				t.Fatalf("seller's device %+v", d)
			}
			for _, c := range certs {
				switch {
				case slices.Contains(usable, c.Serial):
					if c.Status != device.CertRevoked || c.Reason != "transferred to beta" || !c.StatusAt.Equal(now) {
						t.Errorf("certificate %s: %s %q", c.Serial, c.Status, c.Reason)
					}
				case c.Status != device.CertSuperseded || c.Reason != "":
					t.Errorf("superseded certificate %s changed: %s %q", c.Serial, c.Status, c.Reason)
				}
			}
			if a := lastAudit(t, seller); a.Action != "transfer-out" || a.DeviceID != tt.id || a.Actor != "operator:alice" || a.Outcome != "ok" {
				t.Fatalf("seller's audit %+v", a)
			}
			if chain, err := Chain(ctx, seller, tt.id); err != nil || len(chain) != 1 || !bytes.Equal(chain[0], exp.Envelope) {
				t.Fatalf("seller's chain: %d records, %v", len(chain), err)
			}
			// The seller cannot sell it twice.
			if _, err := Create(ctx, seller, o.alpha, tt.id, "gamma", o.gamma.KeyID(), now); !errors.Is(err, ErrNotOwner) {
				t.Fatalf("second sale: %v, want ErrNotOwner", err)
			}

			// The buyer's registry.
			file, err := exp.File()
			if err != nil {
				t.Fatal(err)
			}
			res, err := Accept(ctx, buyer, o.beta, file, now)
			if err != nil {
				t.Fatal(err)
			}
			want = Result{DeviceID: tt.id, Seq: 1, From: "alpha", FromKey: o.alpha.KeyID(), To: "beta", ToKey: o.beta.KeyID(),
				Applied: 1, NameOnly: tt.nameOnly, State: device.Expected}
			if !equalResult(res, want) {
				t.Fatalf("accept result %+v, want %+v", res, want)
			}
			d, _ = getDevice(t, buyer, tt.id)
			if d.State != device.Expected || d.Cause != "operator" || !o.beta.Owns(d.Provenance.Owner, d.Provenance.OwnerKey) ||
				d.Provenance.Owner != "beta" || d.Provenance.Transfers != 1 || d.Provenance.Model != "sensor-x" {
				t.Fatalf("buyer's device %+v", d)
			}
			a := lastAudit(t, buyer)
			if a.Action != "transfer-in" || a.DeviceID != tt.id || a.Outcome != "ok" ||
				strings.Contains(a.Detail, "name only") != tt.nameOnly {
				t.Fatalf("buyer's audit %+v", a)
			}
			if chain, err := Chain(ctx, buyer, tt.id); err != nil || len(chain) != 1 || !bytes.Equal(chain[0], exp.Envelope) {
				t.Fatalf("buyer's chain: %d records, %v", len(chain), err)
			}
		})
	}
}

func equalResult(a, b Result) bool {
	if !slices.Equal(a.Revoked, b.Revoked) {
		return false
	}
	a.Revoked, b.Revoked = nil, nil
	return reflect.DeepEqual(a, b)
}

// TestChain sells a device alpha -> beta -> gamma -> alpha. gamma's
// registry knows only the manufacturer's manifest (owner alpha) and accepts
// the chain beta hands on; alpha accepts the device back.
func TestChain(t *testing.T) {
	ctx := context.Background()
	o := newOwners(t)
	regA, regB, regC := newRegistry(t, o), newRegistry(t, o), newRegistry(t, o)
	id := keyedID

	exp1, err := Create(ctx, regA, o.alpha, id, "beta", o.beta.KeyID(), now)
	if err != nil {
		t.Fatal(err)
	}
	file1, _ := exp1.File()
	if _, err := Accept(ctx, regB, o.beta, file1, now); err != nil {
		t.Fatal(err)
	}
	exp2, err := Create(ctx, regB, o.beta, id, "gamma", o.gamma.KeyID(), now)
	if err != nil {
		t.Fatal(err)
	}
	if exp2.Seq != 2 || len(exp2.Chain) != 2 || !bytes.Equal(exp2.Chain[0], exp1.Envelope) {
		t.Fatalf("second export: seq %d, %d records", exp2.Seq, len(exp2.Chain))
	}
	file2, _ := exp2.File()
	parsed, err := ParseFile(file2)
	if err != nil || len(parsed) != 2 {
		t.Fatalf("ParseFile: %d records, %v", len(parsed), err)
	}

	tests := []struct {
		name    string
		st      store.Store
		buyer   *owner.Identity
		file    func(t *testing.T) []byte
		opts    []Option
		want    Result
		chained int // records the buyer's registry holds afterwards
	}{
		{"ok/chain-of-two-into-a-fresh-registry", regC, o.gamma, func(*testing.T) []byte { return file2 },
			[]Option{WithSellerKey(o.alpha.KeyID())},
			Result{DeviceID: id, Seq: 2, From: "beta", FromKey: o.beta.KeyID(), To: "gamma", ToKey: o.gamma.KeyID(),
				Applied: 2, State: device.Expected}, 2},
		{"ok/back-to-the-first-owner-skips-what-it-holds", regA, o.alpha, func(t *testing.T) []byte {
			exp3, err := Create(ctx, regC, o.gamma, id, "alpha", o.alpha.KeyID(), now)
			if err != nil {
				t.Fatal(err)
			}
			f, _ := exp3.File()
			return f
		}, nil,
			Result{DeviceID: id, Seq: 3, From: "gamma", FromKey: o.gamma.KeyID(), To: "alpha", ToKey: o.alpha.KeyID(),
				Applied: 2, State: device.Expected}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Accept(ctx, tt.st, tt.buyer, tt.file(t), now, tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			if !equalResult(res, tt.want) {
				t.Fatalf("result %+v, want %+v", res, tt.want)
			}
			d, _ := getDevice(t, tt.st, id)
			if d.State != device.Expected || !tt.buyer.Owns(d.Provenance.Owner, d.Provenance.OwnerKey) || d.Provenance.Transfers != tt.want.Seq {
				t.Fatalf("device %+v", d)
			}
			chain, err := Chain(ctx, tt.st, id)
			if err != nil || len(chain) != tt.chained {
				t.Fatalf("chain: %d records, %v", len(chain), err)
			}
		})
	}
}

// TestAcceptRefused checks every refusal of Accept: the exact error, and
// that the buyer's registry did not change.
func TestAcceptRefused(t *testing.T) {
	ctx := context.Background()
	o := newOwners(t)
	seller := newRegistry(t, o)
	exp, err := Create(ctx, seller, o.alpha, keyedID, "beta", o.beta.KeyID(), now)
	if err != nil {
		t.Fatal(err)
	}
	good := exp.Envelope
	toGamma, err := Create(ctx, seller, o.alpha, namedID, "gamma", o.gamma.KeyID(), now)
	if err != nil {
		t.Fatal(err)
	}

	// replayed: a registry that accepted good; older: one that accepted
	// transfers 1 to 3 of the keyed device (alpha -> beta -> gamma -> beta).
	replayed := newRegistry(t, o)
	if _, err := Accept(ctx, replayed, o.beta, good, now); err != nil {
		t.Fatal(err)
	}
	older := newRegistry(t, o)
	r2 := mustSign(t, record(keyedSerial, 2, o.beta, o.gamma), o.beta.Key)
	r3 := mustSign(t, record(keyedSerial, 3, o.gamma, o.beta), o.gamma.Key)
	if _, err := Accept(ctx, older, o.beta, chainFile(t, good, r2, r3), now); err != nil {
		t.Fatal(err)
	}
	forked := record(keyedSerial, 1, o.alpha, o.beta)
	forked.Created = now.Add(1)

	decommissioned := newRegistry(t, o)
	setState(t, decommissioned, keyedID, device.Decommissioned)

	flip := func(i func(n int) int) []byte {
		return mapEnvelope(t, good, func(e *manifest.Envelope) {
			s := e.Signatures[0].Sig
			s[i(len(s))] ^= 0x01
		})
	}

	tests := []struct {
		name  string
		st    store.Store // default: a fresh registry of the buyer beta
		buyer *owner.Identity
		file  []byte
		opts  []Option
		want  error
		also  error
	}{
		{name: "fail/garbage", file: []byte("not a transfer"), want: ErrMalformed},
		{name: "fail/empty", file: nil, want: ErrMalformed},
		{name: "fail/empty-chain", file: []byte("[]"), want: ErrMalformed},
		{name: "fail/trailing-data", file: append(bytes.Clone(good), []byte(" {}")...), want: ErrMalformed},
		{name: "fail/too-large", file: bytes.Repeat([]byte(" "), MaxFileSize+1), want: ErrMalformed},
		{name: "fail/manifest-payload-type", file: signRaw(t, manifest.PayloadType, record(keyedSerial, 1, o.alpha, o.beta), o.alpha.Key),
			want: ErrMalformed},
		{name: "fail/unknown-field", file: signRaw(t, PayloadType, map[string]any{"manufacturer": "acme", "serial": keyedSerial,
			"idevid_key_sha256": idevKey(keyedSerial), "seq": 1, "from": From{"alpha", o.alpha.Key.Public().Bytes()},
			"to": To{"beta", o.beta.KeyID()}, "created": now, "price": 100}, o.alpha.Key), want: ErrMalformed},
		{name: "fail/seq-zero", file: signRaw(t, PayloadType, record(keyedSerial, 0, o.alpha, o.beta), o.alpha.Key), want: ErrMalformed},
		{name: "fail/from-key-not-a-key", file: signRaw(t, PayloadType, func() *Record {
			r := record(keyedSerial, 1, o.alpha, o.beta)
			r.From.Key = r.From.Key[:100]
			return r
		}(), o.alpha.Key), want: ErrMalformed, also: hybridsig.ErrMalformed},
		{name: "fail/ml-dsa-half", file: flip(func(int) int { return 10 }), want: ErrSignature, also: hybridsig.ErrMLDSA},
		{name: "fail/ecdsa-half", file: flip(func(n int) int { return n - 1 }), want: ErrSignature, also: hybridsig.ErrECDSA},
		{name: "fail/payload-changed-after-signing", file: mapEnvelope(t, good, func(e *manifest.Envelope) {
			e.Payload = bytes.Replace(e.Payload, []byte(`"seq":1`), []byte(`"seq":2`), 1)
		}), want: ErrSignature, also: hybridsig.ErrECDSA},
		{name: "fail/not-signed-by-from-key", file: signRaw(t, PayloadType, record(keyedSerial, 1, o.alpha, o.beta), o.mallory.Key),
			want: ErrSignature, also: manifest.ErrUnknownSigner},
		{name: "fail/signed-by-a-non-owner-key", file: mustSign(t, func() *Record {
			r := record(keyedSerial, 1, o.mallory, o.beta)
			r.From.Name = "alpha"
			return r
		}(), o.mallory.Key), want: ErrNotOwner},
		{name: "fail/signed-by-a-non-owner-name", file: mustSign(t, record(namedSerial, 1, o.mallory, o.beta), o.mallory.Key),
			want: ErrNotOwner},
		{name: "fail/name-only-owner-but-not-the-confirmed-seller-key", file: mustSign(t, func() *Record {
			r := record(namedSerial, 1, o.mallory, o.beta)
			r.From.Name = "alpha"
			return r
		}(), o.mallory.Key), opts: []Option{WithSellerKey(o.alpha.KeyID())}, want: ErrNotOwner},
		{name: "fail/for-another-buyer", file: toGamma.Envelope, want: ErrNotForUs},
		{name: "fail/for-another-buyer-at-its-registry", buyer: o.gamma, file: good, want: ErrNotForUs},
		{name: "fail/replayed", st: replayed, file: good, want: ErrReplayed},
		{name: "fail/replayed-older-after-newer", st: older, file: good, want: ErrReplayed},
		{name: "fail/replayed-chain", st: older, file: chainFile(t, good, r2, r3), want: ErrReplayed},
		{name: "fail/fork-of-an-accepted-transfer", st: replayed, file: mustSign(t, forked, o.alpha.Key), want: ErrReplayed},
		{name: "fail/chain-continuing-a-fork", st: replayed, buyer: o.gamma, file: chainFile(t,
			mustSign(t, record(keyedSerial, 1, o.alpha, o.mallory), o.alpha.Key),
			mustSign(t, record(keyedSerial, 2, o.mallory, o.gamma), o.mallory.Key)), want: ErrReplayed},
		{name: "fail/idevid-key-differs", file: mustSign(t, func() *Record {
			r := record(keyedSerial, 1, o.alpha, o.beta)
			r.IDevIDKeySHA256 = idevKey("clone")
			return r
		}(), o.alpha.Key), want: ErrMismatch},
		{name: "fail/unknown-device", file: mustSign(t, record("ACME-999999", 1, o.alpha, o.beta), o.alpha.Key), want: ErrUnknownDevice},
		{name: "fail/earlier-records-missing", file: r2Beta(t, o), want: ErrMismatch},
		{name: "fail/chain-with-a-gap", file: chainFile(t, good, r3), want: ErrMismatch},
		{name: "fail/chain-of-two-devices", file: chainFile(t, good,
			mustSign(t, record(namedSerial, 2, o.beta, o.gamma), o.beta.Key)), buyer: o.gamma, want: ErrMismatch},
		{name: "fail/chain-link-signed-by-a-non-owner", buyer: o.gamma, file: chainFile(t, good,
			mustSign(t, record(keyedSerial, 2, o.mallory, o.gamma), o.mallory.Key)), want: ErrNotOwner},
		{name: "fail/decommissioned", st: decommissioned, file: good, want: ErrState},
		{name: "fail/bad-seller-key-option", file: good, opts: []Option{WithSellerKey("ABC")}, want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.st
			if st == nil {
				st = newRegistry(t, o)
			}
			buyer := tt.buyer
			if buyer == nil {
				buyer = o.beta
			}
			before := snap(t, st)
			_, err := Accept(ctx, st, buyer, tt.file, now, tt.opts...)
			if !errors.Is(err, tt.want) || (tt.also != nil && !errors.Is(err, tt.also)) {
				t.Fatalf("Accept: %v, want %v (and %v)", err, tt.want, tt.also)
			}
			before.mustEqual(t, snap(t, st))
		})
	}
}

// r2Beta is transfer 2 of the keyed device, signed by alpha to beta: a
// record whose earlier record the buyer never saw.
func r2Beta(t testing.TB, o *owners) []byte {
	return mustSign(t, record(keyedSerial, 2, o.alpha, o.beta), o.alpha.Key)
}

// TestCreateRefused checks every refusal of Create: the exact error, and
// that the seller's registry did not change.
func TestCreateRefused(t *testing.T) {
	ctx := context.Background()
	o := newOwners(t)
	st := newRegistry(t, o)
	enroll(t, st, keyedID)
	decom := device.ID("acme", "ACME-000004")
	err := st.Update(ctx, func(tx store.Tx) error {
		d := device.Device{ID: decom, Provenance: prov("ACME-000004", "alpha", o.alpha.KeyID()), State: device.Decommissioned, UpdatedAt: now}
		return tx.PutDevice(&d)
	})
	if err != nil {
		t.Fatal(err)
	}
	alphaOtherKey := newOwner(t, "alpha")
	tests := []struct {
		name          string
		seller        *owner.Identity
		id, to, toKey string
		want          error
	}{
		{"fail/device-of-another-owner", o.alpha, otherID, "beta", o.beta.KeyID(), ErrNotOwner},
		{"fail/same-name-another-key", alphaOtherKey, keyedID, "beta", o.beta.KeyID(), ErrNotOwner},
		{"fail/name-only-device-another-name", o.mallory, namedID, "beta", o.beta.KeyID(), ErrNotOwner},
		{"fail/unknown-device", o.alpha, device.ID("acme", "ACME-999999"), "beta", o.beta.KeyID(), ErrUnknownDevice},
		{"fail/decommissioned", o.alpha, decom, "beta", o.beta.KeyID(), ErrState},
		{"fail/to-oneself", o.alpha, keyedID, "alpha", o.alpha.KeyID(), ErrInvalid},
		{"fail/bad-buyer-key", o.alpha, keyedID, "beta", "BETA", ErrInvalid},
		{"fail/no-buyer-name", o.alpha, keyedID, "", o.beta.KeyID(), ErrInvalid},
		{"fail/buyer-name-with-newline", o.alpha, keyedID, "be\nta", o.beta.KeyID(), ErrInvalid},
		{"fail/bad-device-id", o.alpha, "acme", "beta", o.beta.KeyID(), ErrInvalid},
		{"fail/no-seller-key", &owner.Identity{Name: "alpha"}, keyedID, "beta", o.beta.KeyID(), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := snap(t, st)
			_, err := Create(ctx, st, tt.seller, tt.id, tt.to, tt.toKey, now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Create: %v, want %v", err, tt.want)
			}
			before.mustEqual(t, snap(t, st))
		})
	}
}

// TestCreateShortID accepts the short device identifier form.
func TestCreateShortID(t *testing.T) {
	o := newOwners(t)
	st := newRegistry(t, o)
	exp, err := Create(context.Background(), st, o.alpha, "acme:"+keyedSerial, "beta", o.beta.KeyID(), now)
	if err != nil {
		t.Fatal(err)
	}
	if exp.DeviceID != keyedID {
		t.Fatalf("device %q", exp.DeviceID)
	}
	if _, err := Chain(context.Background(), st, "acme:nothing"); !errors.Is(err, ErrUnknownDevice) {
		t.Fatalf("Chain of an unknown device: %v", err)
	}
}

// BenchmarkCreateAccept measures one sale: the seller's Create (sign and
// commit) and the buyer's Accept (verify and commit), on real registries.
func BenchmarkCreateAccept(b *testing.B) {
	ctx := context.Background()
	o := newOwners(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		seller, buyer := newRegistry(b, o), newRegistry(b, o)
		b.StartTimer()
		exp, err := Create(ctx, seller, o.alpha, keyedID, "beta", o.beta.KeyID(), now)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := Accept(ctx, buyer, o.beta, exp.Envelope, now); err != nil {
			b.Fatal(err)
		}
	}
}
