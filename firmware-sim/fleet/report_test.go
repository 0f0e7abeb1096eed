package fleet

import (
	"testing"
	"time"
)

func ms(n float64) time.Duration { return time.Duration(n * float64(time.Millisecond)) }

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = ms(float64(i + 1))
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{name: "ok/p50 of 1..100", sorted: hundred, p: 50, want: ms(50)},
		{name: "ok/p95 of 1..100", sorted: hundred, p: 95, want: ms(95)},
		{name: "ok/p99 of 1..100", sorted: hundred, p: 99, want: ms(99)},
		{name: "ok/max of 1..100", sorted: hundred, p: 100, want: ms(100)},
		{name: "ok/p50 of two is the lower", sorted: []time.Duration{ms(1), ms(9)}, p: 50, want: ms(1)},
		{name: "ok/p99 of two is the upper", sorted: []time.Duration{ms(1), ms(9)}, p: 99, want: ms(9)},
		{name: "ok/one value", sorted: []time.Duration{ms(7)}, p: 1, want: ms(7)},
		{name: "ok/tiny p rounds up to the first", sorted: hundred, p: 0.001, want: ms(1)},
		{name: "fail/none is zero", sorted: nil, p: 99, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Fatalf("percentile(p%g) = %s, want %s", tc.p, got, tc.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	// Unsorted input; summarize must not reorder the caller's slice.
	lat := []time.Duration{ms(30), ms(10), ms(20), ms(40)}
	r := Report{OK: 4, Duration: 2 * time.Second}
	r.summarize(lat)
	if r.P50 != ms(20) || r.P95 != ms(40) || r.P99 != ms(40) || r.Max != ms(40) {
		t.Fatalf("percentiles = %s %s %s %s", r.P50, r.P95, r.P99, r.Max)
	}
	if r.PerSecond != 2 {
		t.Fatalf("PerSecond = %g, want 2", r.PerSecond)
	}
	if lat[0] != ms(30) {
		t.Fatal("summarize sorted the caller's slice")
	}
}

func TestReportString(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    Report
		want string
	}{
		{
			name: "ok/all well",
			r: Report{Phase: "enroll", Devices: 10000, OK: 10000, Failed: map[string]int{},
				Duration: 11234 * time.Millisecond, PerSecond: 890.15,
				P50: 45123 * time.Microsecond, P95: ms(120), P99: ms(301.7), Max: 1234567 * time.Microsecond},
			want: "enroll: 10000 devices, 10000 ok, 0 failed\n" +
				"  duration 11.23s, 890.1/s, p50 45.1ms p95 120ms p99 301.7ms max 1.235s, retries 0",
		},
		{
			name: "ok/failures by frequency then name",
			r: Report{Phase: "renew", Devices: 10, OK: 5,
				Failed:   map[string]int{"timeout": 1, "held": 2, "denied": 2},
				Duration: time.Second, PerSecond: 5, P50: 850 * time.Microsecond, Retries: 7},
			want: "renew: 10 devices, 5 ok, 5 failed (denied 2, held 2, timeout 1)\n" +
				"  duration 1s, 5.0/s, p50 850µs p95 0s p99 0s max 0s, retries 7",
		},
		{
			name: "ok/fraction of the ceiling",
			r: Report{Phase: "enroll", Devices: 1, OK: 1, Duration: time.Second, PerSecond: 1,
				P50: ms(1), P95: ms(1), P99: ms(1), Max: ms(1), OfCeiling: 0.8349},
			want: "enroll: 1 devices, 1 ok, 0 failed\n" +
				"  duration 1s, 1.0/s, p50 1ms p95 1ms p99 1ms max 1ms, retries 0\n" +
				"  83% of the crts ceiling",
		},
		{
			name: "ok/fraction of the mqtt connect ceiling",
			r: Report{Phase: "enroll", Devices: 1, OK: 1, Duration: time.Second, PerSecond: 1,
				P50: ms(1), P95: ms(1), P99: ms(1), Max: ms(1), OfCeiling: 0.5, Ceiling: PhaseConnect},
			want: "enroll: 1 devices, 1 ok, 0 failed\n" +
				"  duration 1s, 1.0/s, p50 1ms p95 1ms p99 1ms max 1ms, retries 0\n" +
				"  50% of the connect ceiling",
		},
		{
			name: "ok/stay counts",
			r: Report{Phase: PhaseStay, Devices: 10000, OK: 9999, Failed: map[string]int{"timeout": 1},
				Duration: time.Minute, PerSecond: 8.3, P50: ms(40), P95: ms(90), P99: ms(120), Max: ms(300),
				Connected: 9979, Applied: 500, Rotations: 480, Revoked: 20, Ignored: 3, Reconnects: 481},
			want: "stay: 10000 devices, 9999 ok, 1 failed (timeout 1)\n" +
				"  duration 1m0s, 8.3/s, p50 40ms p95 90ms p99 120ms max 300ms, retries 0\n" +
				"  connected 9979, commands applied 500, rotations 480, revoked 20, ignored 3, reconnects 481",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.String(); got != tc.want {
				t.Fatalf("String() =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	if got, want := progressLine("enroll", 3512, 10000, 1012.4, 0), "enroll 3512/10000 1012/s errors 0\n"; got != want {
		t.Fatalf("progressLine = %q, want %q", got, want)
	}
}

func TestBackoff(t *testing.T) {
	for n := range 40 {
		ceiling := backoffCap
		if n < 16 {
			ceiling = min(backoffBase<<n, backoffCap)
		}
		lo, hi := backoff(n, 0), backoff(n, 0.999999)
		if lo != ceiling/2 {
			t.Fatalf("backoff(%d, 0) = %s, want %s", n, lo, ceiling/2)
		}
		if hi >= ceiling || hi < lo {
			t.Fatalf("backoff(%d, ~1) = %s, want in [%s, %s)", n, hi, lo, ceiling)
		}
		if hi > backoffCap || lo < backoffBase/2 {
			t.Fatalf("backoff(%d) = [%s, %s] outside [%s, %s]", n, lo, hi, backoffBase/2, backoffCap)
		}
		if n > 0 && backoff(n, 0) < backoff(n-1, 0) {
			t.Fatalf("backoff(%d) shrank", n)
		}
	}
	for _, tc := range []struct {
		name   string
		maxAge time.Duration
		r      float64
		want   time.Duration
	}{
		{name: "ok/no jitter", maxAge: 30 * time.Second, r: 0, want: 30 * time.Second},
		{name: "ok/half of a quarter", maxAge: 40 * time.Second, r: 0.5, want: 45 * time.Second},
		{name: "ok/zero Max-Age still spreads", maxAge: 0, r: 0.5, want: 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := maxAgeWait(tc.maxAge, tc.r); got != tc.want {
				t.Fatalf("maxAgeWait(%s, %g) = %s, want %s", tc.maxAge, tc.r, got, tc.want)
			}
		})
	}
}
