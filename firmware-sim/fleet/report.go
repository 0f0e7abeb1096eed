package fleet

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Report is what one phase of a run measured.
type Report struct {
	// Phase is "crts" (over MQTT "connect"), "enroll", "renew" or "stay".
	Phase string
	// Devices is how many devices took part; OK how many succeeded.
	Devices, OK int
	// Failed counts the failed devices by reason code.
	Failed map[string]int
	// Duration is the phase's wall-clock time, from the first device's
	// start to the last device's answer.
	Duration time.Duration
	// PerSecond is OK / Duration.
	PerSecond float64
	// P50, P95, P99 and Max are latency percentiles over the devices that
	// succeeded.
	P50, P95, P99, Max time.Duration
	// Retries counts the requests resent, by all devices together.
	Retries int
	// OfCeiling is PerSecond as a fraction of the ceiling pass of the
	// same run (mode both); 0 when there was none. Ceiling names that
	// pass ("crts", or "connect" over MQTT).
	OfCeiling float64
	Ceiling   string

	// The figures of a stay (phase "stay"). There, a device is OK when it
	// was connected at the end with every command it took up applied, or
	// obeyed a "revoked" command; a failed device was not connected at the
	// end, or left a command unapplied, for the last reason it saw.
	// Latencies run from a command's arrival to its state report, and
	// PerSecond counts commands applied.
	//
	// Connected is the devices connected when the stay ended; Applied the
	// command generations applied and reported; Rotations the renewals
	// with a new key that commands asked for; Revoked the devices told
	// that they are revoked (they dropped their LDevID); Ignored the
	// commands that did not verify or named another device, ignored;
	// Reconnects the connections opened again after a loss or a rotation.
	Connected, Applied, Rotations, Revoked, Ignored, Reconnects int
}

// FailedCount is the number of failed devices.
func (r Report) FailedCount() int {
	n := 0
	for _, c := range r.Failed {
		n += c
	}
	return n
}

// String prints the report on two or three lines:
//
//	enroll: 10000 devices, 9998 ok, 2 failed (held 1, unknown_device 1)
//	  duration 11.2s, 893.1/s, p50 45ms p95 120ms p99 300ms max 1.2s, retries 12
//
// A stay adds the line of its counts:
//
//	connected 10000, commands applied 500, rotations 500, revoked 0, ignored 0, reconnects 500
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d devices, %d ok, %d failed", r.Phase, r.Devices, r.OK, r.FailedCount())
	if len(r.Failed) > 0 {
		reasons := make([]string, 0, len(r.Failed))
		for reason := range r.Failed {
			reasons = append(reasons, reason)
		}
		// Most frequent first, then by name.
		slices.SortFunc(reasons, func(a, c string) int {
			if d := r.Failed[c] - r.Failed[a]; d != 0 {
				return d
			}
			return strings.Compare(a, c)
		})
		b.WriteString(" (")
		for i, reason := range reasons {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d", reason, r.Failed[reason])
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, "\n  duration %s, %.1f/s, p50 %s p95 %s p99 %s max %s, retries %d",
		roundDuration(r.Duration), r.PerSecond,
		roundDuration(r.P50), roundDuration(r.P95), roundDuration(r.P99), roundDuration(r.Max), r.Retries)
	if r.OfCeiling > 0 {
		ceiling := r.Ceiling
		if ceiling == "" {
			ceiling = PhaseCrts
		}
		fmt.Fprintf(&b, "\n  %.0f%% of the %s ceiling", 100*r.OfCeiling, ceiling)
	}
	if r.Phase == PhaseStay {
		fmt.Fprintf(&b, "\n  connected %d, commands applied %d, rotations %d, revoked %d, ignored %d, reconnects %d",
			r.Connected, r.Applied, r.Rotations, r.Revoked, r.Ignored, r.Reconnects)
	}
	return b.String()
}

// roundDuration keeps three or four significant digits.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}

// percentile is the nearest-rank percentile p (0 < p <= 100) of sorted
// durations; 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// summarize fills in the latency figures and the throughput of r from the
// latencies of the devices that succeeded.
func (r *Report) summarize(latencies []time.Duration) {
	sorted := slices.Clone(latencies)
	slices.Sort(sorted)
	r.P50 = percentile(sorted, 50)
	r.P95 = percentile(sorted, 95)
	r.P99 = percentile(sorted, 99)
	r.Max = percentile(sorted, 100)
	if r.Duration > 0 {
		r.PerSecond = float64(r.OK) / r.Duration.Seconds()
	}
}

// progressLine is one line of progress: "enroll 3512/10000 1012/s errors 0".
func progressLine(phase string, done, total int, perSecond float64, failed int) string {
	return fmt.Sprintf("%s %d/%d %.0f/s errors %d\n", phase, done, total, perSecond, failed)
}
