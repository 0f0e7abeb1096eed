package vuln

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// The decoders walk the top level of a document and decode its components
// and vulnerabilities one at a time, keeping only what Embark stores: a
// large SBOM costs memory in proportion to its component list, not to the
// whole object tree the cyclonedx-go types would build for it.

// decodeJSON decodes a CycloneDX JSON document: one object, nothing after
// it but white space, each member at most once.
func decodeJSON(body []byte, r *raw) error {
	err := decodeJSONObject(body, r)
	if err == nil {
		if r.bomFormat != cdx.BOMFormat {
			return malformed("bomFormat %q, want %q", r.bomFormat, cdx.BOMFormat)
		}
		if r.spec == 0 {
			return malformed("no specVersion")
		}
		return nil
	}
	if errors.Is(err, ErrMalformed) {
		return err
	}
	// Say "not CycloneDX" rather than where a foreign document does not
	// fit CycloneDX's types.
	var head struct {
		BOMFormat string `json:"bomFormat"`
	}
	if r.bomFormat != cdx.BOMFormat && json.Unmarshal(body, &head) == nil && head.BOMFormat != cdx.BOMFormat {
		return malformed("bomFormat %q, want %q", head.BOMFormat, cdx.BOMFormat)
	}
	return malformed("JSON: %v", err)
}

func decodeJSONObject(body []byte, r *raw) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil {
		return err
	} else if tok != json.Delim('{') {
		return fmt.Errorf("want an object, found %v", tok)
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		if seen[key] {
			return malformed("member %q twice", key)
		}
		seen[key] = true
		switch key {
		case "bomFormat":
			err = dec.Decode(&r.bomFormat)
		case "specVersion":
			err = dec.Decode(&r.spec)
		case "serialNumber":
			err = dec.Decode(&r.serial)
		case "version":
			err = dec.Decode(&r.version)
		case "metadata":
			err = dec.Decode(&r.metadata)
		case "components":
			r.hasComponents = true
			err = jsonArray(dec, func(i int) error {
				var c cdx.Component
				if err := dec.Decode(&c); err != nil {
					return err
				}
				return r.addComponent(fmt.Sprintf("components[%d]", i), &c)
			})
		case "vulnerabilities":
			err = jsonArray(dec, func(i int) error {
				var v cdx.Vulnerability
				if err := dec.Decode(&v); err != nil {
					return err
				}
				return r.addVulnerability(i, &v)
			})
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			if errors.Is(err, ErrMalformed) {
				return err
			}
			return fmt.Errorf("%s: %w", key, err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the document")
	}
	return nil
}

// jsonArray calls fn for each element of the array (or null) dec is at;
// fn decodes the element.
func jsonArray(dec *json.Decoder, fn func(i int) error) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil
	}
	if tok != json.Delim('[') {
		return fmt.Errorf("want an array, found %v", tok)
	}
	for i := 0; dec.More(); i++ {
		if err := fn(i); err != nil {
			return err
		}
	}
	_, err = dec.Token()
	return err
}

// cdxNamespace is the XML namespace of CycloneDX documents, followed by the
// spec version.
const cdxNamespace = "http://cyclonedx.org/schema/bom/"

// decodeXML decodes a CycloneDX XML document: one bom element in a
// CycloneDX namespace, nothing after it but white space, comments and
// processing instructions.
func decodeXML(body []byte, r *raw) error {
	dec := xml.NewDecoder(bytes.NewReader(body))
	root, err := xmlRoot(dec)
	if err != nil {
		return err
	}
	if root.Name.Local != "bom" || !strings.HasPrefix(root.Name.Space, cdxNamespace) {
		return malformed("XML root %s in namespace %q, want a CycloneDX bom", root.Name.Local, root.Name.Space)
	}
	for spec := cdx.SpecVersion1_0; spec <= cdx.SpecVersion1_7; spec++ {
		if root.Name.Space == cdxNamespace+spec.String() {
			r.spec = spec
		}
	}
	if r.spec == 0 {
		return malformed("unknown CycloneDX namespace %q", root.Name.Space)
	}
	for _, a := range root.Attr {
		switch a.Name.Local {
		case "serialNumber":
			r.serial = a.Value
		case "version":
			if r.version, err = strconv.Atoi(a.Value); err != nil {
				return malformed("bom version %q", a.Value)
			}
		}
	}
	err = xmlChildren(dec, func(se xml.StartElement) error {
		switch se.Name.Local {
		case "metadata":
			r.metadata = new(cdx.Metadata)
			return dec.DecodeElement(r.metadata, &se)
		case "components":
			r.hasComponents = true
			i := 0
			return xmlChildren(dec, func(se xml.StartElement) error {
				if se.Name.Local != "component" {
					return dec.Skip()
				}
				var c cdx.Component
				if err := dec.DecodeElement(&c, &se); err != nil {
					return err
				}
				i++
				return r.addComponent(fmt.Sprintf("components[%d]", i-1), &c)
			})
		case "vulnerabilities":
			i := 0
			return xmlChildren(dec, func(se xml.StartElement) error {
				if se.Name.Local != "vulnerability" {
					return dec.Skip()
				}
				var v cdx.Vulnerability
				if err := dec.DecodeElement(&v, &se); err != nil {
					return err
				}
				i++
				return r.addVulnerability(i-1, &v)
			})
		}
		return dec.Skip()
	})
	if err != nil {
		if errors.Is(err, ErrMalformed) {
			return err
		}
		return malformed("XML: %v", err)
	}
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return malformed("XML after the bom element: %v", err)
		}
		if !xmlIgnorable(tok) {
			return malformed("content after the bom element")
		}
	}
}

// xmlRoot returns the document's first element.
func xmlRoot(dec *xml.Decoder) (xml.StartElement, error) {
	for {
		tok, err := dec.Token()
		if err != nil {
			return xml.StartElement{}, malformed("XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			return se, nil
		}
		if _, doctype := tok.(xml.Directive); !doctype && !xmlIgnorable(tok) {
			return xml.StartElement{}, malformed("XML: content before the root element")
		}
	}
}

// xmlChildren calls fn for each child element of the element dec has just
// entered, up to its end; fn consumes the child (DecodeElement or Skip).
func xmlChildren(dec *xml.Decoder, fn func(xml.StartElement) error) error {
	for {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch t := tok.(type) {
		case xml.StartElement:
			if err := fn(t); err != nil {
				return err
			}
		case xml.EndElement:
			return nil
		}
	}
}

func xmlIgnorable(tok xml.Token) bool {
	switch t := tok.(type) {
	case xml.CharData:
		return len(bytes.TrimSpace(t)) == 0
	case xml.Comment, xml.ProcInst:
		return true
	}
	return false
}
