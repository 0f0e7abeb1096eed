package fleet

import (
	"github.com/embark-iot/embark/pkg/devattr"

	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
)

func TestNewCSR(t *testing.T) {
	key, der, err := newCSR("SN-000042", devattr.Reported{FirmwareVersion: "1.4.2"})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() || !pub.Equal(&key.PublicKey) {
		t.Fatal("CSR does not carry the device's P-256 key")
	}
	if csr.Subject.String() != "CN=SN-000042" {
		t.Fatalf("subject = %q, want CN=SN-000042 and nothing else", csr.Subject)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) != 0 {
		t.Fatal("CSR carries names beyond the subject")
	}
	// The only extension is the reported firmware.
	if got, err := devattr.FromCSR(csr); err != nil || got.FirmwareVersion != "1.4.2" || len(csr.Extensions) != 1 {
		t.Fatalf("reported firmware = %+v, %v (%d extensions)", got, err, len(csr.Extensions))
	}
}

func TestPrepare(t *testing.T) {
	for _, tc := range []struct {
		name  string
		renew bool
	}{
		{name: "ok/enroll only"},
		{name: "ok/with renewal keys", renew: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			devs := make([]*simDevice, 9)
			for i := range devs {
				devs[i] = &simDevice{serial: fmt.Sprintf("SN-%d", i)}
			}
			if err := prepare(context.Background(), devs, tc.renew); err != nil {
				t.Fatal(err)
			}
			for _, d := range devs {
				csr, err := x509.ParseCertificateRequest(d.enrollCSR)
				if err != nil || csr.Subject.CommonName != d.serial {
					t.Fatalf("%s: enrollment CSR %v", d.serial, err)
				}
				if !csr.PublicKey.(*ecdsa.PublicKey).Equal(&d.enrollKey.PublicKey) {
					t.Fatalf("%s: enrollment CSR is not for the enrollment key", d.serial)
				}
				if tc.renew != (d.renewKey != nil) {
					t.Fatalf("%s: renewal key present = %v, want %v", d.serial, d.renewKey != nil, tc.renew)
				}
				if tc.renew {
					rcsr, err := x509.ParseCertificateRequest(d.renewCSR)
					if err != nil || !rcsr.PublicKey.(*ecdsa.PublicKey).Equal(&d.renewKey.PublicKey) {
						t.Fatalf("%s: renewal CSR is not for the renewal key", d.serial)
					}
					if d.renewKey.Equal(d.enrollKey) {
						t.Fatalf("%s: renewal does not re-key", d.serial)
					}
				}
			}
		})
	}
	t.Run("fail/canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		devs := []*simDevice{{serial: "a"}, {serial: "b"}, {serial: "c"}, {serial: "d"}, {serial: "e"}}
		if err := prepare(ctx, devs, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	})
}
