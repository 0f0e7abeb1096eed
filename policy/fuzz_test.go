package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary files to Parse: it never panics, refuses with
// an *Errors whose items carry the file name, and a policy it accepts
// decides without panicking.
func FuzzParse(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("examples", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(enginePolicy))
	f.Add([]byte(head + "  - name: a\n    when: |\n      device.model == 'x' &&\n        device.colour\n    decision: deny\n"))
	f.Add([]byte("rules: [\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := Parse("f.yaml", src)
		if err != nil {
			var errs *Errors
			if p != nil || !errors.As(err, &errs) || !errors.Is(err, ErrInvalid) || len(*errs) == 0 {
				t.Fatalf("Parse = %v, %v", p, err)
			}
			for _, e := range *errs {
				if e.File != "f.yaml" || e.Line < 0 || e.Column < 0 || e.Msg == "" {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		if len(p.Rules()) == 0 {
			t.Fatal("a policy without rules")
		}
		for _, in := range []Input{{}, acmeInput()} {
			d, err := p.Decide(in)
			if Severity(d.Action) < 0 || d.PolicyHash != p.Hash() {
				t.Fatalf("Decide = %+v, %v", d, err)
			}
			if err != nil && d.Action != ActionDeny {
				t.Fatalf("Decide failed open: %+v, %v", d, err)
			}
		}
	})
}
