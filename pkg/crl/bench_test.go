package crl

import (
	"context"
	"math/big"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/store"
)

// BenchmarkRegenerate100k measures one regeneration over 100,000
// revocations (none expired).
func BenchmarkRegenerate100k(b *testing.B) {
	const total, perTx = 100_000, 10_000
	e := newEnv(b)
	ctx := context.Background()
	serial := new(big.Int).Lsh(big.NewInt(1), 150)
	notAfter := testEpoch.Add(365 * 24 * time.Hour)
	for i := 0; i < total; i += perTx {
		if err := e.st.Update(ctx, func(tx store.Tx) error {
			for j := range perTx {
				s := new(big.Int).Add(serial, big.NewInt(int64(i+j)))
				if err := RecordRevocation(tx, SerialHex(s), notAfter, testEpoch, (i+j)%2*ReasonKeyCompromise); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	p := e.publisher(b)
	b.ResetTimer()
	var der []byte
	for b.Loop() {
		var err error
		if der, err = p.Regenerate(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	crl := e.parse(b, der)
	if n := len(crl.RevokedCertificateEntries); n != total {
		b.Fatalf("%d entries, want %d", n, total)
	}
	b.ReportMetric(float64(len(der)), "crl-bytes")
}
