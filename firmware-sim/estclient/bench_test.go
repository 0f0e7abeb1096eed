package estclient_test

import (
	"context"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/estclient/esttest"
)

// BenchmarkHandshakeCrts measures one device's session: full handshake
// with its IDevID, GET crts, close. Client and server share the machine.
func BenchmarkHandshakeCrts(b *testing.B) {
	for _, tr := range []estclient.Transport{estclient.DTLS, estclient.TLS} {
		b.Run(string(tr), func(b *testing.B) {
			p, err := esttest.NewPKI()
			if err != nil {
				b.Fatal(err)
			}
			s, err := esttest.Start(p, esttest.Options{Transport: string(tr)})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			idevid, err := p.IDevID("SN-1")
			if err != nil {
				b.Fatal(err)
			}
			cfg := estclient.Config{Target: s.Target, Roots: p.Roots(), Certificate: &idevid, Timeout: 10 * time.Second}
			ctx := context.Background()
			for b.Loop() {
				cl, err := estclient.Dial(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := cl.CACerts(ctx); err != nil {
					b.Fatal(err)
				}
				_ = cl.Close()
			}
		})
	}
}
