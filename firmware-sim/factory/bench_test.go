package factory

import (
	"context"
	"path/filepath"
	"testing"
)

// BenchmarkRun10000 mints 10,000 devices and their manifest into a fresh
// directory per iteration.
func BenchmarkRun10000(b *testing.B) {
	for b.Loop() {
		dir := filepath.Join(b.TempDir(), "out")
		if _, err := Run(context.Background(), Options{Out: dir, Count: 10000}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadDevices10000 reads back 10,000 devices.
func BenchmarkReadDevices10000(b *testing.B) {
	dir := b.TempDir()
	if _, err := Run(context.Background(), Options{Out: dir, Count: 10000}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := ReadDevices(filepath.Join(dir, DevicesFile)); err != nil {
			b.Fatal(err)
		}
	}
}
