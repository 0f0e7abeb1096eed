package fleet

import "time"

// Backoff after a transport failure (timeout, lost handshake).
const (
	backoffBase = 200 * time.Millisecond
	backoffCap  = 10 * time.Second
)

// backoff is the wait before resend n (0 for the first) after a transport
// failure: the ceiling base·2^n, capped at backoffCap, jittered into
// [ceiling/2, ceiling) by r in [0, 1).
func backoff(n int, r float64) time.Duration {
	ceiling := backoffCap
	if n < 16 {
		ceiling = min(backoffBase<<n, backoffCap)
	}
	half := ceiling / 2
	return half + time.Duration(r*float64(half))
}

// maxAgeWait is the wait before resending after 5.03 with Max-Age: Max-Age
// plus up to a quarter of it (at least up to 100ms) drawn by r in [0, 1),
// so that devices told the same Max-Age do not come back at once.
func maxAgeWait(maxAge time.Duration, r float64) time.Duration {
	spread := max(maxAge/4, 100*time.Millisecond)
	return maxAge + time.Duration(r*float64(spread))
}
