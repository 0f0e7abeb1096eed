package policy

import (
	"fmt"
	"testing"
)

func TestScratch(t *testing.T) {
	for _, src := range []string{
		"rules:\n  - name: a\n   when: x\n",
		"rules: [\n",
		"a: b\n\tc: d\n",
		"policy: x\nrules:\n  - name: 'a\n    when: x\n",
		"policy: x\nrules:\n  - name: a\n    when: x: y\n",
		"policy: x\nrules:\n  - name: a\n    when: x\n  foo\n",
		"policy: x\nzones:\n  - name: a\n    topics: [a, b\n    segment: x\nrules: []\n",
		"policy: x\nrules:\n  - name: a\n    when: \"x\n",
		"- a\nb: c\n",
		"a: b\n- c\n",
		"a: b\n---\nc: d\n",
		"a: *x\n",
		"a: !!foo x\n",
	} {
		_, err := Parse("p.yaml", []byte(src))
		fmt.Printf("%q\n%s\n---\n", src, err)
	}
}
