package pki_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"time"

	"github.com/embark-iot/embark/pki"
)

func ExampleCA_IssueLDevID() {
	dir, err := os.MkdirTemp("", "embark-ca-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	ca, err := pki.Init(dir) // creates the CA; later starts load it
	if err != nil {
		fmt.Println(err)
		return
	}
	// In Embark the key comes from the device's CSR, checked by the caller.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fmt.Println(err)
		return
	}
	cert, err := ca.IssueLDevID(pki.LDevIDRequest{
		PublicKey: &key.PublicKey,
		DeviceID:  "urn:dev:embark:acme:ACME-000001",
		Lifetime:  7 * 24 * time.Hour,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	id, _ := pki.DeviceIDOf(cert)
	fmt.Println(cert.Issuer.CommonName)
	fmt.Println(id)
	fmt.Println(ca.VerifyLDevID(cert, time.Now()))
	// Output:
	// Embark Intermediate CA
	// urn:dev:embark:acme:ACME-000001
	// <nil>
}
