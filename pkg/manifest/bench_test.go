package manifest

import "testing"

func BenchmarkSign10000(b *testing.B) {
	a, _ := testKeys(b)
	m := testManifest(10000)
	for b.Loop() {
		if _, err := Sign(m, a); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen10000(b *testing.B) {
	a, _ := testKeys(b)
	env, err := Sign(testManifest(10000), a)
	if err != nil {
		b.Fatal(err)
	}
	keys := lookupOf(a.Public())
	b.SetBytes(int64(len(env)))
	b.ReportMetric(float64(len(env)), "envelope-bytes")
	for b.Loop() {
		if _, err := Open(env, keys); err != nil {
			b.Fatal(err)
		}
	}
}
