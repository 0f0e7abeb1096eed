package audit

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func chain(n int) []Entry {
	var out []Entry
	prev := Entry{}
	for i := 0; i < n; i++ {
		e := Seal(prev, Entry{Time: time.Unix(int64(i), 0).UTC(), Actor: "device", Action: "enroll", Outcome: "ok"})
		out = append(out, e)
		prev = e
	}
	return out
}

func TestVerifyChain(t *testing.T) {
	if err := VerifyChain(Entry{}, chain(5)); err != nil {
		t.Fatalf("ok/intact: %v", err)
	}
	tests := []struct {
		name   string
		mutate func([]Entry) []Entry
		want   string
	}{
		{"fail/tampered", func(c []Entry) []Entry { c[2].Outcome = "denied"; return c }, "at entry 3: content"},
		{"fail/deleted", func(c []Entry) []Entry { return append(c[:2], c[3:]...) }, "at entry 4: sequence"},
		{"fail/reordered", func(c []Entry) []Entry { c[1], c[2] = c[2], c[1]; return c }, "at entry 3: sequence"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyChain(Entry{}, tt.mutate(chain(5)))
			if !errors.Is(err, ErrBroken) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
