package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"text/template"
	"time"

	"go.step.sm/crypto/x509util"
)

// ldevidTemplate is an x509util template parsed once and executed per
// certificate. text/template is safe for concurrent execution.
type ldevidTemplate struct {
	t *template.Template
}

var templateBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// oidSubjectAltName is the SAN extension, which a template may write itself.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// compileTemplate parses text and tries it once on a sample request, so that
// a template that cannot produce a valid LDevID is refused at load.
func compileTemplate(text string) (*ldevidTemplate, error) {
	funcs := x509util.GetFuncMap()
	// x509util's "fail" records its message in shared state, which is a data
	// race when the template runs concurrently; return it as an error instead.
	funcs["fail"] = func(msg string) (string, error) {
		return "", &x509util.TemplateError{Message: msg}
	}
	t, err := template.New("ldevid").Funcs(funcs).Parse(text)
	if err != nil {
		return nil, fmt.Errorf("pki: parse LDevID template: %w: %w", ErrTemplate, err)
	}
	lt := &ldevidTemplate{t: t}
	if err := lt.try(); err != nil {
		return nil, fmt.Errorf("pki: try LDevID template: %w", err)
	}
	return lt, nil
}

// try issues a throwaway self-signed certificate for a sample device from the
// template and checks it. A template that fails on purpose ("fail") for the
// sample device is accepted: its conditions may not hold for it.
func (lt *ldevidTemplate) try() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	const id = "urn:dev:embark:example:TEMPLATE-CHECK"
	uri, err := parseDeviceID(id)
	if err != nil {
		return err
	}
	tmpl, err := lt.build(&key.PublicKey, x509.ECDSA, id, uri, id)
	if err != nil {
		if _, ok := errors.AsType[*x509util.TemplateError](err); ok {
			return nil
		}
		return err
	}
	serial, err := newSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	tmpl.SerialNumber = serial
	tmpl.NotBefore, tmpl.NotAfter = now, now.Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	return checkLDevID(c, id)
}

// build executes the template and returns the certificate template it
// describes, with the device URN added if the template left it out.
func (lt *ldevidTemplate) build(pub crypto.PublicKey, alg x509.PublicKeyAlgorithm, id string, uri *url.URL, cn string) (*x509.Certificate, error) {
	subject := x509util.Subject{CommonName: cn}
	data := x509util.TemplateData{
		x509util.SubjectKey: subject,
		x509util.SANsKey:    []x509util.SubjectAlternativeName{{Type: x509util.URIType, Value: id}},
		x509util.InsecureKey: x509util.TemplateData{
			x509util.CertificateRequestKey: &x509util.CertificateRequest{
				Subject:            subject,
				URIs:               x509util.MultiURL{uri},
				PublicKey:          pub,
				PublicKeyAlgorithm: alg,
			},
		},
		"DeviceID": id,
	}
	buf := templateBuffers.Get().(*bytes.Buffer)
	buf.Reset()
	defer templateBuffers.Put(buf)
	if err := lt.t.Execute(buf, data); err != nil {
		if te, ok := errors.AsType[*x509util.TemplateError](err); ok {
			return nil, fmt.Errorf("%w: template refused: %w", ErrTemplate, te)
		}
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	// x509util decodes the JSON, enforces the public key and encodes SAN
	// types crypto/x509 does not know.
	withBuffer := func(_ *x509.CertificateRequest, o *x509util.Options) error {
		o.CertBuffer = buf
		return nil
	}
	c, err := x509util.NewCertificateFromX509(&x509.Certificate{
		PublicKey:          pub,
		PublicKeyAlgorithm: alg,
		Subject:            pkix.Name{CommonName: cn},
		URIs:               []*url.URL{uri},
	}, withBuffer)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTemplate, err)
	}
	tmpl := c.GetCertificate()
	if tmpl.IsCA || tmpl.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		return nil, fmt.Errorf("%w: template makes a CA certificate", ErrTemplate)
	}
	if !hasURN(tmpl.URIs) && !hasExtension(tmpl.ExtraExtensions, oidSubjectAltName) {
		tmpl.URIs = append(tmpl.URIs, uri)
	}
	return tmpl, nil
}

// checkLDevID checks what every LDevID must be, whatever a template said.
func checkLDevID(c *x509.Certificate, id string) error {
	switch got, ok := DeviceIDOf(c); {
	case c.IsCA || c.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return fmt.Errorf("%w: result is a CA certificate", ErrTemplate)
	case !hasClientAuth(c):
		return fmt.Errorf("%w: result lacks the clientAuth extended key usage", ErrTemplate)
	case !ok || got != id:
		return fmt.Errorf("%w: result must carry exactly one URN URI SAN, %q", ErrTemplate, id)
	}
	return nil
}

func hasURN(uris []*url.URL) bool {
	for _, u := range uris {
		if u.Scheme == "urn" {
			return true
		}
	}
	return false
}

func hasExtension(exts []pkix.Extension, oid asn1.ObjectIdentifier) bool {
	for _, e := range exts {
		if e.Id.Equal(oid) {
			return true
		}
	}
	return false
}
