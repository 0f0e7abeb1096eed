package vuln

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/embark-iot/embark/pkg/device"
)

// Limits on what becomes part of a registry key. Longer values are refused
// as malformed (in documents) or match nothing (in lookups).
const (
	// MaxPartLen bounds a product's model and firmware version, in bytes.
	MaxPartLen = 64
	// MaxRefLen bounds a component purl or bom-ref, in bytes.
	MaxRefLen = 384
	// MaxIDLen bounds a vulnerability identifier, in bytes.
	MaxIDLen = 64
)

// product is what the registry's devices are: a manufacturer's model running
// one firmware version.
type product struct {
	Manufacturer, Model, Firmware string
}

// check reports why p cannot name a product, or nil.
func (p product) check() error {
	if err := device.ValidManufacturerName(p.Manufacturer); err != nil {
		return err
	}
	for _, f := range []struct{ name, v string }{{"model", p.Model}, {"firmware version", p.Firmware}} {
		switch {
		case f.v == "":
			return fmt.Errorf("empty %s", f.name)
		case len(f.v) > MaxPartLen:
			return fmt.Errorf("%s of %d bytes, at most %d", f.name, len(f.v), MaxPartLen)
		case !printable(f.v):
			return fmt.Errorf("%s %q has control characters", f.name, f.v)
		}
	}
	return nil
}

// key is the registry key of p: "<manufacturer>/<model>@<firmware>", model
// and firmware escaped as in a purl so that the key is unambiguous.
func (p product) key() string {
	return p.Manufacturer + "/" + escape(p.Model) + "@" + escape(p.Firmware)
}

// purl is p's package URL, "pkg:generic/<manufacturer>/<model>@<firmware>".
func (p product) purl() string { return "pkg:generic/" + p.key() }

func (p product) String() string { return p.key() }

// productOfKey inverts [product.key].
func productOfKey(k string) (product, bool) {
	m, rest, ok := strings.Cut(k, "/")
	if !ok {
		return product{}, false
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return product{}, false
	}
	model, err1 := url.PathUnescape(rest[:i])
	fw, err2 := url.PathUnescape(rest[i+1:])
	if err1 != nil || err2 != nil {
		return product{}, false
	}
	p := product{m, model, fw}
	return p, p.check() == nil
}

// productOfPurl recognises the product convention
// pkg:generic/<manufacturer>/<model>@<firmware> (qualifiers and subpath
// ignored, the manufacturer compared in lower case).
func productOfPurl(s string) (product, bool) {
	if len(s) < len("pkg:generic/") || !strings.EqualFold(s[:len("pkg:generic/")], "pkg:generic/") {
		return product{}, false
	}
	rest := s[len("pkg:generic/"):]
	if i := strings.IndexByte(rest, '#'); i >= 0 {
		rest = rest[:i]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i]
	}
	i := strings.LastIndexByte(rest, '@')
	if i < 0 {
		return product{}, false
	}
	path, version := rest[:i], rest[i+1:]
	ns, name, ok := strings.Cut(path, "/")
	if !ok || strings.Contains(name, "/") {
		return product{}, false
	}
	ns, err1 := url.PathUnescape(ns)
	name, err2 := url.PathUnescape(name)
	version, err3 := url.PathUnescape(version)
	if err1 != nil || err2 != nil || err3 != nil {
		return product{}, false
	}
	p := product{strings.ToLower(ns), name, version}
	return p, p.check() == nil
}

// subjectOf returns the subject statements about the package URL s are
// stored under: the canonical product purl for a product, s itself for
// anything else.
func subjectOf(purl string) string {
	if p, ok := productOfPurl(purl); ok {
		return p.purl()
	}
	return purl
}

// escape percent-encodes every byte of s but ASCII letters, digits and
// ".-_~".
func escape(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	const hex = "0123456789ABCDEF"
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_' || c == '~'
}

// printable reports whether s has no ASCII control characters.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
