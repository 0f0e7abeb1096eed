package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/firmware-sim/fleet"
)

// TestMQTTFleet enrolls 200 devices at once over MQTT — each with a full TLS
// handshake to the broker, a nonce, a signed request and a signed answer it
// verifies — renews them all with new keys, and checks the registry and
// what each device holds; over the embedded broker and over Mosquitto.
func TestMQTTFleet(t *testing.T) {
	for _, k := range brokerKinds {
		t.Run(string(k), func(t *testing.T) {
			const n = 200
			fdir := mint(t, n, 0)
			e := startEmbarkMQTT(t, k, fdir)
			if res := e.trustAndImport(t, fdir); res.New != n {
				t.Fatalf("imported %d new devices, want %d", res.New, n)
			}
			state := filepath.Join(t.TempDir(), "state.jsonl")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			reports, err := fleet.Run(ctx, fleet.Options{
				FactoryDir:  fdir,
				Transport:   fleet.TransportMQTT,
				Target:      "mqtts://" + e.mqttAddr,
				RootFile:    e.root,
				Concurrency: 100,
				Renew:       true,
				StateFile:   state,
			})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range reports {
				t.Log(r.String())
				if r.OK != n {
					t.Fatalf("%s: %d of %d ok, failures %v", r.Phase, r.OK, n, r.Failed)
				}
			}
			if len(reports) != 2 || reports[0].Phase != "enroll" || reports[1].Phase != "renew" {
				t.Fatalf("phases = %v", reports)
			}
			checkFleet(t, e, state, n, 1)
		})
	}
}
