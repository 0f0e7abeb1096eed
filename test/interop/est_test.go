package interop

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"

	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/onboard"
)

// TestCACerts fetches Embark's CA certificates (RFC 9148 /crts) with both
// coap-client builds over DTLS.
func TestCACerts(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 1)
	e.trust(t, acme, true)
	e.importManifest(t, acme)
	dev := deviceFiles(t, acme.take(t), false)
	wrongCA := filepath.Join(acme.dir, factory.RootCertFile)

	tests := []struct {
		name       string
		path       string
		accept     string
		block      string // -b: ask for the answer in blocks of this size
		anonymous  bool   // no client certificate: /crts is public
		ca         string // default: Embark's root
		wantCode   string
		wantFormat string
	}{
		{name: "ok/default-root-pkcs7", path: "/.well-known/est/crts", accept: "281", wantCode: "2.05", wantFormat: "281"},
		{name: "ok/short-alias-pkcs7", path: "/est/crts", accept: "281", wantCode: "2.05", wantFormat: "281"},
		{name: "ok/default-root-pkix-cert", path: "/.well-known/est/crts", accept: "287", wantCode: "2.05", wantFormat: "287"},
		{name: "ok/without-client-certificate", path: "/.well-known/est/crts", accept: "281", anonymous: true, wantCode: "2.05", wantFormat: "281"},
		{name: "ok/block-wise-answer", path: "/.well-known/est/crts", accept: "281", block: "64", wantCode: "2.05", wantFormat: "281"},
		// The client must refuse a server that does not chain to its CA
		// file: this shows the ok cases verified the server.
		{name: "fail/server-not-from-ca-file", path: "/.well-known/est/crts", accept: "281", ca: wrongCA},
	}
	for _, name := range clientNames {
		for _, tc := range tests {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				c := lookClient(t, name)
				req := request{method: "get", uri: e.coaps(tc.path), accept: tc.accept, block: tc.block, cert: dev.cert, key: dev.key, ca: e.root}
				if tc.anonymous {
					req.cert, req.key = "", ""
				}
				if tc.ca != "" {
					req.ca = tc.ca
				}
				r := c.do(t, req)
				if r.Code != tc.wantCode || r.Format != tc.wantFormat {
					t.Fatalf("got code %q format %q, want %q %q\n%s", r.Code, r.Format, tc.wantCode, tc.wantFormat, r)
				}
				if tc.block != "" && !strings.Contains(r.Stdout, "Block2:1/") {
					t.Fatalf("the answer did not come in blocks\n%s", r)
				}
				switch tc.wantFormat {
				case "281":
					checkCACertsPKCS7(t, e, r.Payload)
				case "287":
					if !bytes.Equal(r.Payload, e.srv.CA().Root().Raw) {
						t.Fatalf("287 payload (%d bytes) is not Embark's root certificate", len(r.Payload))
					}
				default:
					if r.Payload != nil {
						t.Fatalf("payload written without a response: %d bytes", len(r.Payload))
					}
					if !r.mentions("certificate") {
						t.Fatalf("no certificate error reported\n%s", r)
					}
				}
			})
		}
	}
}

// checkCACertsPKCS7 checks a certs-only PKCS#7 holding Embark's chain.
func checkCACertsPKCS7(t *testing.T, e *embark, der []byte) {
	t.Helper()
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatalf("281 payload does not parse as PKCS#7: %v", err)
	}
	if len(p7.Content) != 0 || len(p7.Signers) != 0 {
		t.Fatalf("PKCS#7 is not certs-only: %d content bytes, %d signers", len(p7.Content), len(p7.Signers))
	}
	for _, want := range e.srv.CA().Chain() {
		if !slices.ContainsFunc(p7.Certificates, func(c *x509.Certificate) bool { return bytes.Equal(c.Raw, want.Raw) }) {
			t.Errorf("PKCS#7 lacks %s", want.Subject)
		}
	}
	if len(p7.Certificates) != len(e.srv.CA().Chain()) {
		t.Errorf("PKCS#7 holds %d certificates, want Embark's chain of %d", len(p7.Certificates), len(e.srv.CA().Chain()))
	}
}

// TestEnroll enrolls devices (RFC 9148 /sen) with both coap-client builds
// over DTLS, with CSRs made by openssl.
func TestEnroll(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 16)
	e.trust(t, acme, true)
	e.importManifest(t, acme)

	tests := []struct {
		name     string
		path     string
		accept   string
		genpkey  bool // openssl genpkey instead of ecparam
		leafOnly bool // cert.pem holds the IDevID without its intermediate
	}{
		{name: "ok/default-root-pkix-cert", path: "/.well-known/est/sen", accept: "287"},
		{name: "ok/default-root-pkcs7", path: "/.well-known/est/sen", accept: "281", genpkey: true},
		{name: "ok/short-alias-pkix-cert", path: "/est/sen", accept: "287", genpkey: true},
		{name: "ok/idevid-without-intermediate", path: "/.well-known/est/sen", accept: "287", leafOnly: true},
	}
	for _, name := range clientNames {
		for _, tc := range tests {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				c := lookClient(t, name)
				dev := deviceFiles(t, acme.take(t), tc.leafOnly)
				csr := opensslCSR(t, tc.genpkey)
				if d, _ := e.device(t, "acme", dev.serial); d.State != device.Expected || d.Current != "" {
					t.Fatalf("before: device %s is %s with certificate %q, want expected without one", d.ID, d.State, d.Current)
				}
				r := c.do(t, request{method: "post", uri: e.coaps(tc.path), format: "286", accept: tc.accept,
					body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root})
				if r.Code != "2.04" || r.Format != tc.accept {
					t.Fatalf("got code %q format %q, want 2.04 %s\n%s", r.Code, r.Format, tc.accept, r)
				}
				cert := issuedCert(t, tc.accept, r.Payload)
				checkEnrolled(t, e, "acme", dev.serial, cert, csr.spki)
			})
		}
	}

	// A device that lost the response sends the same CSR again: it gets the
	// certificate already issued, not a second one.
	for _, name := range clientNames {
		t.Run(name+"/ok/retry-returns-the-same-certificate", func(t *testing.T) {
			c := lookClient(t, name)
			dev := deviceFiles(t, acme.take(t), false)
			csr := opensslCSR(t, false)
			req := request{method: "post", uri: e.coaps("/.well-known/est/sen"), format: "286", accept: "287",
				body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root}
			first := c.do(t, req)
			if first.Code != "2.04" {
				t.Fatalf("first: got code %q, want 2.04\n%s", first.Code, first)
			}
			before := e.stats(t)
			again := c.do(t, req)
			if again.Code != "2.04" || !bytes.Equal(again.Payload, first.Payload) {
				t.Fatalf("retry: got code %q and a different certificate: %v\n%s", again.Code, !bytes.Equal(again.Payload, first.Payload), again)
			}
			if after := e.stats(t); after.Certificates != before.Certificates || after.Devices != before.Devices {
				t.Fatalf("retry changed the registry: %+v -> %+v", before, after)
			}
			checkEnrolled(t, e, "acme", dev.serial, issuedCert(t, "287", again.Payload), csr.spki)
		})
	}
}

// issuedCert decodes the certificate of a /sen answer.
func issuedCert(t *testing.T, format string, payload []byte) *x509.Certificate {
	t.Helper()
	switch format {
	case "287":
		c, err := x509.ParseCertificate(payload)
		if err != nil {
			t.Fatalf("287 payload: %v", err)
		}
		return c
	case "281":
		p7, err := pkcs7.Parse(payload)
		if err != nil {
			t.Fatalf("281 payload does not parse as PKCS#7: %v", err)
		}
		if len(p7.Certificates) != 1 {
			t.Fatalf("281 payload holds %d certificates, want the LDevID alone", len(p7.Certificates))
		}
		return p7.Certificates[0]
	}
	t.Fatalf("no decoder for format %q", format)
	return nil
}

// checkEnrolled checks an LDevID against Embark's root, the device's
// identity and the CSR's key, and the registry's record of the device.
func checkEnrolled(t *testing.T, e *embark, manufacturer, serial string, cert *x509.Certificate, spki []byte) {
	t.Helper()
	roots, inters := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(e.srv.CA().Root())
	inters.AddCert(e.srv.CA().Intermediate())
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inters,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("LDevID does not chain to Embark's root: %v", err)
	}
	wantURI := device.ID(manufacturer, serial)
	if len(cert.URIs) != 1 || cert.URIs[0].String() != wantURI {
		t.Errorf("LDevID URI SANs %v, want [%s]", cert.URIs, wantURI)
	}
	if !bytes.Equal(cert.RawSubjectPublicKeyInfo, spki) {
		t.Errorf("LDevID public key is not the key openssl made")
	}
	d, certs := e.device(t, manufacturer, serial)
	if d.State != device.Onboarded || d.Current != onboard.SerialHex(cert) {
		t.Errorf("registry: device %s is %s with current certificate %q, want onboarded with %s",
			d.ID, d.State, d.Current, onboard.SerialHex(cert))
	}
	i := slices.IndexFunc(certs, func(c device.Certificate) bool { return c.Serial == onboard.SerialHex(cert) })
	if i < 0 {
		t.Fatalf("registry: certificate %s not stored for %s", onboard.SerialHex(cert), d.ID)
	}
	if rec := certs[i]; !bytes.Equal(rec.DER, cert.Raw) || rec.Kind != device.KindEnroll || !rec.Status.Usable() {
		t.Errorf("registry: certificate record %s: kind %s status %s, same DER %v", rec.Serial, rec.Kind, rec.Status, bytes.Equal(rec.DER, cert.Raw))
	}
}

// TestEnrollRefused sends enrollments that Embark must refuse, and checks
// the code, libcoap's printout of the diagnostic payload, and that the
// registry did not change beyond the audit entry expected.
func TestEnrollRefused(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 1)
	e.trust(t, acme, true)
	e.importManifest(t, acme)
	known := deviceFiles(t, acme.take(t), false)
	// Devices of a trusted manufacturer, in a manifest revision never imported.
	acme.mintMore(t, 2)
	// A manufacturer nobody trusts.
	rogue := mint(t, "rogue", 2)
	csr := opensslCSR(t, false)
	junk := filepath.Join(t.TempDir(), "junk")
	if err := os.WriteFile(junk, []byte("not a CSR"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		path      string                   // default /.well-known/est/sen
		dev       func(t *testing.T) creds // default: a known device
		anonymous bool
		method    string // default post
		format    string // default 286
		accept    string // default 287
		body      string // default the openssl CSR
		wantCode  string
		wantDiag  string // prefix of the diagnostic payload
		// wantAudit is the outcome of the one audit entry expected, or "".
		wantAudit string
	}{
		{name: "fail/untrusted-manufacturer", dev: func(t *testing.T) creds { return deviceFiles(t, rogue.take(t), false) },
			wantCode: "4.03", wantDiag: "untrusted_chain: "},
		{name: "fail/unknown-device", dev: func(t *testing.T) creds { return deviceFiles(t, acme.take(t), false) },
			wantCode: "4.03", wantDiag: "unknown_device: ", wantAudit: "unknown_device"},
		{name: "fail/no-client-certificate", anonymous: true, wantCode: "4.01", wantDiag: "unauthenticated: "},
		{name: "fail/malformed-csr", body: junk, wantCode: "4.00", wantDiag: "malformed_csr: "},
		{name: "fail/csr-not-content-format-286", format: "0", wantCode: "4.15", wantDiag: "bad_request: "},
		{name: "fail/accept-unsupported-format", accept: "50", wantCode: "4.06", wantDiag: "bad_request: "},
		{name: "fail/get-instead-of-post", method: "get", format: "-", wantCode: "4.05", wantDiag: "bad_request: "},
		{name: "fail/renew-with-idevid", path: "/.well-known/est/sren", wantCode: "4.03", wantDiag: "wrong_credential: "},
	}
	for _, name := range clientNames {
		for _, tc := range tests {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				c := lookClient(t, name)
				dev := known
				if tc.dev != nil {
					dev = tc.dev(t)
				}
				req := request{method: "post", uri: e.coaps("/.well-known/est/sen"), format: "286", accept: "287",
					body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root}
				if tc.anonymous {
					req.cert, req.key = "", ""
				}
				if tc.path != "" {
					req.uri = e.coaps(tc.path)
				}
				if tc.method != "" {
					req.method, req.body = tc.method, ""
				}
				switch tc.format {
				case "":
				case "-":
					req.format = ""
				default:
					req.format = tc.format
				}
				if tc.accept != "" {
					req.accept = tc.accept
				}
				if tc.body != "" {
					req.body = tc.body
				}
				before, seq := e.stats(t), e.lastAuditSeq(t)

				r := c.do(t, req)
				if r.Code != tc.wantCode || !strings.HasPrefix(r.Diagnostic, tc.wantDiag) {
					t.Fatalf("got %q %q, want %s %q...\n%s", r.Code, r.Diagnostic, tc.wantCode, tc.wantDiag, r)
				}
				if r.Payload != nil {
					t.Errorf("a refusal wrote a payload file of %d bytes", len(r.Payload))
				}
				after := e.stats(t)
				entries := e.auditSince(t, seq)
				wantEntries := 0
				if tc.wantAudit != "" {
					wantEntries = 1
				}
				if after.Devices != before.Devices || after.Certificates != before.Certificates ||
					after.AuditEntries != before.AuditEntries+wantEntries || len(entries) != wantEntries {
					t.Fatalf("registry changed: %+v -> %+v, %d new audit entries, want %d", before, after, len(entries), wantEntries)
				}
				if wantEntries == 1 && (entries[0].Action != "enroll" || entries[0].Outcome != tc.wantAudit || entries[0].DeviceID != "") {
					t.Errorf("audit entry %+v, want an enroll refused as %s with no device", entries[0], tc.wantAudit)
				}
				if d, _ := e.device(t, "acme", known.serial); d.State != device.Expected || d.Current != "" {
					t.Errorf("known device %s became %s with certificate %q", d.ID, d.State, d.Current)
				}
			})
		}
	}
}

// TestRenew enrolls, renews with the LDevID (RFC 9148 /sren), then tries
// to enroll again with a new key while the LDevID is in use, which waits
// for an operator: 5.03 with Max-Age (RFC 9148 §4.7).
func TestRenew(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 2)
	e.trust(t, acme, true)
	e.importManifest(t, acme)

	for _, name := range clientNames {
		t.Run(name, func(t *testing.T) {
			c := lookClient(t, name)
			dev := deviceFiles(t, acme.take(t), false)
			// Made here, not in the subtest: the LDevID key outlives it.
			csr := opensslCSR(t, false)
			var ldevid *x509.Certificate
			ok := t.Run("ok/enroll", func(t *testing.T) {
				r := c.do(t, request{method: "post", uri: e.coaps("/.well-known/est/sen"), format: "286", accept: "287",
					body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root})
				if r.Code != "2.04" {
					t.Fatalf("got code %q, want 2.04\n%s", r.Code, r)
				}
				ldevid = issuedCert(t, "287", r.Payload)
				checkEnrolled(t, e, "acme", dev.serial, ldevid, csr.spki)
			})
			if !ok {
				return
			}
			ok = t.Run("ok/renew-with-ldevid", func(t *testing.T) {
				certFile := filepath.Join(t.TempDir(), "ldevid.pem")
				if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ldevid.Raw}), 0o600); err != nil {
					t.Fatal(err)
				}
				next := opensslCSR(t, true)
				r := c.do(t, request{method: "post", uri: e.coaps("/.well-known/est/sren"), format: "286", accept: "281",
					body: next.csr, cert: certFile, key: csr.key, ca: e.root})
				if r.Code != "2.04" || r.Format != "281" {
					t.Fatalf("got code %q format %q, want 2.04 281\n%s", r.Code, r.Format, r)
				}
				renewed := issuedCert(t, "281", r.Payload)
				if !bytes.Equal(renewed.RawSubjectPublicKeyInfo, next.spki) || len(renewed.URIs) != 1 || renewed.URIs[0].String() != device.ID("acme", dev.serial) {
					t.Fatalf("renewed LDevID: URIs %v, key from the CSR %v", renewed.URIs, bytes.Equal(renewed.RawSubjectPublicKeyInfo, next.spki))
				}
				d, certs := e.device(t, "acme", dev.serial)
				if d.Current != onboard.SerialHex(renewed) || d.Previous != onboard.SerialHex(ldevid) {
					t.Fatalf("registry: current %q previous %q, want %s %s", d.Current, d.Previous, onboard.SerialHex(renewed), onboard.SerialHex(ldevid))
				}
				i := slices.IndexFunc(certs, func(c device.Certificate) bool { return c.Serial == d.Current })
				if i < 0 || certs[i].Kind != device.KindRenew || certs[i].Predecessor != onboard.SerialHex(ldevid) {
					t.Fatalf("registry: no renewal record of %s succeeding %s", d.Current, onboard.SerialHex(ldevid))
				}
			})
			if !ok {
				return
			}
			t.Run("fail/enroll-new-key-while-ldevid-in-use", func(t *testing.T) {
				another := opensslCSR(t, false)
				before := e.stats(t)
				r := c.do(t, request{method: "post", uri: e.coaps("/.well-known/est/sen"), format: "286", accept: "287",
					body: another.csr, cert: dev.cert, key: dev.key, ca: e.root})
				if r.Code != "5.03" || !strings.HasPrefix(r.Diagnostic, "held: ") || r.MaxAge != "60" {
					t.Fatalf("got %q %q Max-Age %q, want 5.03 \"held: ...\" Max-Age 60\n%s", r.Code, r.Diagnostic, r.MaxAge, r)
				}
				d, _ := e.device(t, "acme", dev.serial)
				if d.State != device.Held {
					t.Errorf("device %s is %s, want held", d.ID, d.State)
				}
				if after := e.stats(t); after.Certificates != before.Certificates {
					t.Errorf("a held enrollment stored a certificate: %d -> %d", before.Certificates, after.Certificates)
				}
			})
		})
	}
}

// TestBlockwiseCSR sends the CSR in 64-byte blocks (RFC 7959 Block1), as a
// device with small buffers does. libcoap gives each block request its own
// token and ties the blocks together with a Request-Tag (RFC 9175), which
// RFC 7959 allows ("the client is free to choose tokens for each
// exchange"); the server must reassemble by endpoint and options, not by
// token.
func TestBlockwiseCSR(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 4)
	e.trust(t, acme, true)
	e.importManifest(t, acme)

	for _, name := range clientNames {
		for _, transport := range []string{"coaps", "coaps+tcp"} {
			t.Run(name+"/ok/"+transport, func(t *testing.T) {
				c := lookClient(t, name)
				uri := e.coaps("/.well-known/est/sen")
				if transport == "coaps+tcp" {
					if ok, build := c.supportsTLS(t); !ok {
						t.Skipf("%s has no CoAP over TLS support: %s", name, build)
					}
					uri = e.coapsTCP("/.well-known/est/sen")
				}
				dev := deviceFiles(t, acme.take(t), false)
				csr := opensslCSR(t, false)
				r := c.do(t, request{method: "post", uri: uri, format: "286", accept: "287", block: "64",
					body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root})
				if r.Code != "2.04" || r.Format != "287" {
					t.Fatalf("got %q %q %q, want 2.04 287\n%s", r.Code, r.Format, r.Diagnostic, r)
				}
				checkEnrolled(t, e, "acme", dev.serial, issuedCert(t, "287", r.Payload), csr.spki)
			})
		}
	}
}

// TestChainCompletion shows why Embark completes IDevID chains from the
// intermediates an operator registered: coap-client-openssl sends only its
// leaf certificate. Here the manufacturer is trusted with its root alone.
func TestChainCompletion(t *testing.T) {
	e := startEmbark(t)
	beta := mint(t, "beta", 3)
	e.trust(t, beta, false)
	e.importManifest(t, beta)

	tests := []struct {
		name     string
		client   string
		leafOnly bool
		wantCode string
		wantDiag string
	}{
		{name: "ok/gnutls-sends-the-intermediate-of-its-cert-file", client: gnutlsClient, wantCode: "2.04"},
		{name: "fail/openssl-sends-only-its-leaf", client: opensslClient, wantCode: "4.03", wantDiag: "untrusted_chain: "},
		{name: "fail/gnutls-with-a-leaf-only-cert-file", client: gnutlsClient, leafOnly: true, wantCode: "4.03", wantDiag: "untrusted_chain: "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := lookClient(t, tc.client)
			dev := deviceFiles(t, beta.take(t), tc.leafOnly)
			csr := opensslCSR(t, false)
			r := c.do(t, request{method: "post", uri: e.coaps("/.well-known/est/sen"), format: "286", accept: "287",
				body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root})
			if r.Code != tc.wantCode || !strings.HasPrefix(r.Diagnostic, tc.wantDiag) {
				t.Fatalf("got %q %q, want %s %q...\n%s", r.Code, r.Diagnostic, tc.wantCode, tc.wantDiag, r)
			}
			d, _ := e.device(t, "beta", dev.serial)
			if tc.wantCode == "2.04" {
				checkEnrolled(t, e, "beta", dev.serial, issuedCert(t, "287", r.Payload), csr.spki)
			} else if d.State != device.Expected || d.Current != "" {
				t.Errorf("refused device %s became %s with certificate %q", d.ID, d.State, d.Current)
			}
		})
	}
}

// TestDiscovery reads /.well-known/core (RFC 6690) with both builds.
func TestDiscovery(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 1)
	e.trust(t, acme, true)
	e.importManifest(t, acme)
	dev := deviceFiles(t, acme.take(t), false)

	est := map[string]string{
		"/est/crts": `rt="ace.est.crts";ct="281 287"`,
		"/est/sen":  `rt="ace.est.sen";ct="281 287"`,
		"/est/sren": `rt="ace.est.sren";ct="281 287"`,
		"/est/att":  `rt="ace.est.att";ct=285`,
	}
	// Besides EST, the server lists the device's network profile.
	withProfile := map[string]string{"/embark/profile": `rt="embark.profile";ct=50`, "/embark/crl": `rt="embark.crl";ct=42`, "/est": `rt="ace.est"`,
		"/embark/status": `rt="embark.status";ct=60;obs`}
	for k, v := range est {
		withProfile[k] = v
	}
	tests := []struct {
		name  string
		query string
		// want lists links that must be present with these attributes;
		// only lists the exact set of links expected.
		want map[string]string
		only bool
	}{
		{name: "ok/all", want: withProfile},
		{name: "ok/rt-wildcard", query: "?rt=ace.est*", want: est},
		{name: "ok/rt-sen", query: "?rt=ace.est.sen", want: map[string]string{"/est/sen": est["/est/sen"]}, only: true},
	}
	for _, name := range clientNames {
		for _, tc := range tests {
			t.Run(name+"/"+tc.name, func(t *testing.T) {
				c := lookClient(t, name)
				r := c.do(t, request{method: "get", uri: e.coaps("/.well-known/core" + tc.query), cert: dev.cert, key: dev.key, ca: e.root})
				if r.Code != "2.05" || r.Format != "application/link-format" {
					t.Fatalf("got code %q format %q, want 2.05 application/link-format\n%s", r.Code, r.Format, r)
				}
				links := parseLinks(string(r.Payload))
				for path, attrs := range tc.want {
					if links[path] != attrs {
						t.Errorf("link <%s>: attributes %q, want %q (payload %s)", path, links[path], attrs, r.Payload)
					}
				}
				for path, attrs := range links {
					if _, known := withProfile[path]; !known {
						t.Errorf("unexpected link <%s>;%s", path, attrs)
					}
					if tc.query != "" && !strings.HasPrefix(attrs, `rt="ace.est`) {
						t.Errorf("link <%s>;%s passed the filter %s", path, attrs, tc.query)
					}
					if _, ok := tc.want[path]; tc.only && !ok {
						t.Errorf("link <%s> does not match the filter %s", path, tc.query)
					}
				}
			})
		}
	}
}

// parseLinks maps each link target of a CoRE link-format document to its
// attributes.
func parseLinks(doc string) map[string]string {
	out := map[string]string{}
	for _, l := range strings.Split(doc, ",") {
		target, attrs, _ := strings.Cut(strings.TrimSpace(l), ";")
		out[strings.Trim(target, "<>")] = attrs
	}
	return out
}

// TestCoAPOverTLS uses CoAP over TLS (RFC 8323, coaps+tcp) where the
// libcoap build supports it.
func TestCoAPOverTLS(t *testing.T) {
	e := startEmbark(t)
	acme := mint(t, "acme", 4)
	e.trust(t, acme, true)
	e.importManifest(t, acme)
	wrongCA := filepath.Join(acme.dir, factory.RootCertFile)

	for _, name := range clientNames {
		t.Run(name, func(t *testing.T) {
			c := lookClient(t, name)
			if ok, build := c.supportsTLS(t); !ok {
				t.Skipf("%s has no CoAP over TLS (coaps+tcp) support: %s", name, build)
			}
			dev := deviceFiles(t, acme.take(t), false)
			t.Run("ok/crts", func(t *testing.T) {
				r := c.do(t, request{method: "get", uri: e.coapsTCP("/.well-known/est/crts"), accept: "281",
					cert: dev.cert, key: dev.key, ca: e.root})
				if r.Code != "2.05" || r.Format != "281" {
					t.Fatalf("got code %q format %q, want 2.05 281\n%s", r.Code, r.Format, r)
				}
				checkCACertsPKCS7(t, e, r.Payload)
			})
			t.Run("ok/sen", func(t *testing.T) {
				csr := opensslCSR(t, true)
				r := c.do(t, request{method: "post", uri: e.coapsTCP("/.well-known/est/sen"), format: "286", accept: "281",
					body: csr.csr, cert: dev.cert, key: dev.key, ca: e.root})
				if r.Code != "2.04" || r.Format != "281" {
					t.Fatalf("got code %q format %q, want 2.04 281\n%s", r.Code, r.Format, r)
				}
				checkEnrolled(t, e, "acme", dev.serial, issuedCert(t, "281", r.Payload), csr.spki)
			})
			t.Run("fail/server-not-from-ca-file", func(t *testing.T) {
				other := deviceFiles(t, acme.take(t), false)
				csr := opensslCSR(t, false)
				before := e.stats(t)
				r := c.do(t, request{method: "post", uri: e.coapsTCP("/.well-known/est/sen"), format: "286", accept: "287",
					body: csr.csr, cert: other.cert, key: other.key, ca: wrongCA})
				if r.Code != "" || r.Payload != nil || !r.mentions("certificate") {
					t.Fatalf("client went on with an unverified server\n%s", r)
				}
				if after := e.stats(t); after != before {
					t.Fatalf("registry changed: %+v -> %+v", before, after)
				}
			})
		})
	}
}
