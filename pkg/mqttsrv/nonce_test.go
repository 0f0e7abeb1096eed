package mqttsrv

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/onboard"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func openDB(t *testing.T, path string) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

const devA, devB = "urn:dev:embark:acme:A1", "urn:dev:embark:acme:B2"

func TestNonces(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	db := openDB(t, filepath.Join(t.TempDir(), "r.db"))
	defer db.Close()
	n, err := NewNonces(ctx, db, 5*time.Minute, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() []byte {
		b, err := n.Issue(devA)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tampered := fresh()
	tampered[0] ^= 1
	used := fresh()
	if err := n.Consume(ctx, devA, used); err != nil {
		t.Fatalf("first use: %v", err)
	}
	tests := []struct {
		name   string
		device string
		nonce  []byte
		before func()
		want   onboard.Reason
	}{
		{name: "ok/fresh", device: devA, nonce: fresh()},
		{name: "fail/replayed", device: devA, nonce: used, want: onboard.ReasonReplayed},
		{name: "fail/other device", device: devB, nonce: fresh(), want: onboard.ReasonUnknownNonce},
		{name: "fail/tampered", device: devA, nonce: tampered, want: onboard.ReasonUnknownNonce},
		{name: "fail/short", device: devA, nonce: []byte("0123456789"), want: onboard.ReasonUnknownNonce},
		{name: "fail/expired", device: devA, nonce: fresh(), before: func() { clk.Add(5*time.Minute + time.Second) }, want: onboard.ReasonExpiredNonce},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			err := n.Consume(ctx, tt.device, tt.nonce)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Consume: %v", err)
				}
				return
			}
			if got := onboard.ReasonOf(err); got != tt.want {
				t.Fatalf("Consume: %v (reason %q), want reason %q", err, got, tt.want)
			}
		})
	}
}

// A used nonce stays used across a restart, and the MAC key survives it:
// nonces issued before still verify.
func TestNoncesSurviveRestart(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), "r.db")
	db := openDB(t, path)
	n, err := NewNonces(ctx, db, time.Minute, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	used, _ := n.Issue(devA)
	unused, _ := n.Issue(devA)
	if err := n.Consume(ctx, devA, used); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = openDB(t, path)
	defer db.Close()
	n, err = NewNonces(ctx, db, time.Minute, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	if got := onboard.ReasonOf(n.Consume(ctx, devA, used)); got != onboard.ReasonReplayed {
		t.Fatalf("used nonce after restart: reason %q, want replayed", got)
	}
	if err := n.Consume(ctx, devA, unused); err != nil {
		t.Fatalf("unused nonce after restart: %v", err)
	}
}

func TestNoncesSweep(t *testing.T) {
	ctx := context.Background()
	clk := &fakeClock{t: time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)}
	db := openDB(t, filepath.Join(t.TempDir(), "r.db"))
	defer db.Close()
	n, err := NewNonces(ctx, db, time.Minute, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		b, _ := n.Issue(devA)
		if err := n.Consume(ctx, devA, b); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := n.Sweep(ctx); err != nil || got != 0 {
		t.Fatalf("sweep before expiry: %d, %v; want 0", got, err)
	}
	clk.Add(2 * time.Minute)
	late, _ := n.Issue(devA)
	if err := n.Consume(ctx, devA, late); err != nil {
		t.Fatal(err)
	}
	if got, err := n.Sweep(ctx); err != nil || got != 3 {
		t.Fatalf("sweep after expiry: %d, %v; want 3", got, err)
	}
	if got := onboard.ReasonOf(n.Consume(ctx, devA, late)); got != onboard.ReasonReplayed {
		t.Fatalf("a live used nonce after the sweep: reason %q, want replayed", got)
	}
}

func TestNewNoncesRefusesZeroTTL(t *testing.T) {
	db := openDB(t, filepath.Join(t.TempDir(), "r.db"))
	defer db.Close()
	if _, err := NewNonces(context.Background(), db, 0, time.Now); err == nil {
		t.Fatal("NewNonces accepted a zero lifetime")
	}
}
