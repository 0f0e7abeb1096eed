package crl

import (
	"context"
	"errors"
	"maps"
	"math/big"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/store"
)

func TestNewOptions(t *testing.T) {
	e := newEnv(t)
	fails := []struct {
		name string
		opts []Option
	}{
		{"fail/nil-clock", []Option{WithClock(nil)}},
		{"fail/nil-logger", []Option{WithLogger(nil)}},
		{"fail/nil-error-handler", []Option{WithErrorHandler(nil)}},
		{"fail/short-validity", []Option{WithValidity(time.Second)}},
		{"fail/zero-refresh", []Option{WithRefresh(0)}},
		{"fail/refresh-not-shorter", []Option{WithValidity(time.Hour), WithRefresh(time.Hour)}},
	}
	for _, tc := range fails {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(e.st, e.ca, tc.opts...)
			if !errors.Is(err, ErrInvalidOption) || p != nil {
				t.Fatalf("New = %v, %v; want ErrInvalidOption", p, err)
			}
		})
	}
	t.Run("fail/nil-store", func(t *testing.T) {
		if _, err := New(nil, e.ca); !errors.Is(err, ErrInvalidOption) {
			t.Fatalf("New(nil store) = %v", err)
		}
	})
}

func TestRegenerate(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	now := testEpoch
	e.revoke(t, "1234", now.Add(48*time.Hour), ReasonKeyCompromise)
	e.revoke(t, "abcdef", now.Add(2*time.Hour), ReasonSuperseded)
	e.revoke(t, "77", now.Add(30*24*time.Hour), ReasonUnspecified)

	p := e.publisher(t, WithValidity(24*time.Hour))
	der, err := p.Regenerate(ctx)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("ok/entries-appear", func(t *testing.T) {
		crl := e.parse(t, der)
		want := map[string]int{"1234": ReasonKeyCompromise, "abcdef": ReasonSuperseded, "77": ReasonUnspecified}
		if got := listed(crl); !maps.Equal(got, want) {
			t.Errorf("listed %v, want %v", got, want)
		}
		if crl.Number.Cmp(big.NewInt(1)) != 0 || p.Number().Cmp(big.NewInt(1)) != 0 {
			t.Errorf("number %v (cached %v), want 1", crl.Number, p.Number())
		}
		if !crl.ThisUpdate.Equal(now) || !crl.NextUpdate.Equal(now.Add(24*time.Hour)) || !p.NextUpdate().Equal(crl.NextUpdate) {
			t.Errorf("thisUpdate %v nextUpdate %v (cached %v)", crl.ThisUpdate, crl.NextUpdate, p.NextUpdate())
		}
		e.opensslVerify(t, der, "1234", "ABCDEF", "Key Compromise", "Superseded")
	})

	t.Run("ok/expired-dropped", func(t *testing.T) {
		e.clock.Advance(3 * time.Hour) // abcdef expired
		defer e.clock.Advance(-3 * time.Hour)
		der, err := p.Regenerate(ctx)
		if err != nil {
			t.Fatal(err)
		}
		crl := e.parse(t, der)
		want := map[string]int{"1234": ReasonKeyCompromise, "77": ReasonUnspecified}
		if got := listed(crl); !maps.Equal(got, want) {
			t.Errorf("listed %v, want %v", got, want)
		}
		recs := e.records(t, KindRevoked)
		if _, ok := recs["abcdef"]; ok || len(recs) != 2 {
			t.Errorf("records after drop: %v", recs)
		}
		if crl.Number.Cmp(big.NewInt(2)) != 0 {
			t.Errorf("number %v, want 2", crl.Number)
		}
	})

	t.Run("ok/number-survives-restart", func(t *testing.T) {
		if err := e.st.Close(); err != nil {
			t.Fatal(err)
		}
		e.open(t)
		p2 := e.publisher(t)
		der, err := p2.Current(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if crl := e.parse(t, der); crl.Number.Cmp(big.NewInt(3)) != 0 {
			t.Errorf("number after restart %v, want 3", crl.Number)
		}
	})
}

func TestRegenerateCorrupt(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name       string
		kind, key  string
		val        string
		wantNumber bool
	}{
		{"fail/bad-cbor", KindRevoked, "a1", "\xff\x00", true},
		{"fail/bad-key", KindRevoked, "NOT-HEX", "", true},
		{"fail/bad-number", KindMeta, metaNumber, "seven", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			p := e.publisher(t)
			if tc.wantNumber {
				if _, err := p.Regenerate(ctx); err != nil {
					t.Fatal(err)
				}
			}
			val := tc.val
			if val == "" {
				em, _ := encMode()
				b, err := em.Marshal(Revocation{RevokedAt: testEpoch, Reason: 1, NotAfter: testEpoch.Add(time.Hour)})
				if err != nil {
					t.Fatal(err)
				}
				val = string(b)
			}
			if err := e.st.Update(ctx, func(tx store.Tx) error { return tx.PutRecord(tc.kind, tc.key, []byte(val)) }); err != nil {
				t.Fatal(err)
			}
			meta := e.records(t, KindMeta)
			before := p.Number()
			der, err := p.Regenerate(ctx)
			if !errors.Is(err, ErrCorruptRecord) || der != nil {
				t.Fatalf("Regenerate = %d bytes, %v; want ErrCorruptRecord", len(der), err)
			}
			if got := e.records(t, KindMeta); !maps.Equal(got, meta) {
				t.Errorf("meta changed: %v, want %v", got, meta)
			}
			if after := p.Number(); (before == nil) != (after == nil) || (before != nil && before.Cmp(after) != 0) {
				t.Errorf("cached number changed from %v to %v", before, after)
			}
		})
	}
}

func TestCurrent(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	p := e.publisher(t, WithValidity(24*time.Hour), WithRefresh(8*time.Hour))
	first, err := p.Current(ctx)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name    string
		advance time.Duration
		number  int64
	}{
		{"ok/fresh-is-cached", 15*time.Hour + 59*time.Minute, 1},
		{"ok/inside-refresh-margin-regenerates", time.Minute, 2},
		{"ok/new-one-cached", time.Hour, 2},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			e.clock.Advance(s.advance)
			der, err := p.Current(ctx)
			if err != nil {
				t.Fatal(err)
			}
			crl := e.parse(t, der)
			if crl.Number.Cmp(big.NewInt(s.number)) != 0 {
				t.Errorf("number %v, want %d", crl.Number, s.number)
			}
			if s.number == 1 && &der[0] != &first[0] {
				t.Error("fresh CRL was rebuilt")
			}
		})
	}
}

func TestRun(t *testing.T) {
	e := newEnv(t)
	p := e.publisher(t, WithValidity(24*time.Hour))
	type wait struct {
		d  time.Duration
		ch chan time.Time
	}
	waits := make(chan wait)
	type regen struct {
		number *big.Int
		err    error
	}
	regens := make(chan regen, 8)
	p.after = func(d time.Duration) <-chan time.Time {
		ch := make(chan time.Time, 1)
		waits <- wait{d, ch}
		return ch
	}
	p.regenerated = func(n *big.Int, err error) { regens <- regen{n, err} }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	defer func() { cancel(); <-done }()

	expect := func(t *testing.T, n int64) {
		t.Helper()
		r := <-regens
		if r.err != nil || r.number.Cmp(big.NewInt(n)) != 0 {
			t.Fatalf("regeneration = %v, %v; want number %d", r.number, r.err, n)
		}
	}
	nextWait := func(t *testing.T, want time.Duration) wait {
		t.Helper()
		w := <-waits
		if w.d != want {
			t.Fatalf("Run waits %v, want %v", w.d, want)
		}
		return w
	}

	t.Run("ok/initial", func(t *testing.T) {
		expect(t, 1)
	})
	t.Run("ok/trigger-regenerates", func(t *testing.T) {
		nextWait(t, 16*time.Hour)
		e.revoke(t, "beef", testEpoch.Add(time.Hour), ReasonCessationOfOperation)
		p.Trigger()
		expect(t, 2)
		der, err := p.Current(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := listed(e.parse(t, der)); got["beef"] != ReasonCessationOfOperation || len(got) != 1 {
			t.Errorf("listed %v, want beef", got)
		}
	})
	t.Run("ok/before-next-update", func(t *testing.T) {
		w := nextWait(t, 16*time.Hour)
		e.clock.Advance(16 * time.Hour)
		w.ch <- e.clock.Now()
		expect(t, 3)
		if want := e.clock.Now().Add(24 * time.Hour); !p.NextUpdate().Equal(want) {
			t.Errorf("nextUpdate %v, want %v", p.NextUpdate(), want)
		}
		nextWait(t, 16*time.Hour)
	})
}
