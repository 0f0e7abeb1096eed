package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"runtime"
	"sync"

	"github.com/embark-iot/embark/pkg/devattr"
	"github.com/embark-iot/embark/pkg/voucher"
)

// simDevice is one simulated device: its factory identity, the key pairs
// and CSRs it prepared, and the LDevID it holds.
type simDevice struct {
	serial string
	// id is the device URN (MQTT only): client id and topic namespace.
	id     string
	idevid tls.Certificate
	// idevidChain is idevid's chain, parsed, leaf first.
	idevidChain []*x509.Certificate
	// firmware is what the device reports in its CSRs.
	firmware devattr.Reported

	enrollKey *ecdsa.PrivateKey
	enrollCSR []byte
	renewKey  *ecdsa.PrivateKey
	renewCSR  []byte

	// ldevid and ldevidKey are the current operational credential, nil
	// until the device enrolled.
	ldevid    *x509.Certificate
	ldevidKey *ecdsa.PrivateKey
	// ldevidChain is the LDevID's CA chain as the MQTT answer gave it
	// (verified intermediates, shared between devices); nil over CoAP,
	// where the intermediates come from crts.
	ldevidChain []*x509.Certificate
	// answerChain is the chain of the last answer, kept until the answer
	// is committed.
	answerChain []*x509.Certificate
	// rotateKey and rotateCSR are those of a rotation under way.
	rotateKey *ecdsa.PrivateKey
	rotateCSR []byte

	// applied is the last command generation applied, reported the last
	// one reported, zone the zone the commands named.
	applied, reported uint64
	zone              string

	// pledgeSigner signs voucher requests with the IDevID key (zero touch);
	// domain is the server chain the device verified against the domain
	// certificate its voucher pinned, leaf first, pinned last.
	pledgeSigner *voucher.RequestSigner
	domain       []*x509.Certificate
}

// newCSR makes a P-256 key pair and a DER CSR for it with subject
// CN=serial and the firmware the device reports (package devattr).
func newCSR(serial string, fw devattr.Reported) (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: key for %s: %w", serial, err)
	}
	exts, err := devattr.Extensions(fw)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: csr for %s: %w", serial, err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:         pkix.Name{CommonName: serial},
		ExtraExtensions: exts,
	}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("fleet: csr for %s: %w", serial, err)
	}
	return key, der, nil
}

// prepare makes every device's enrollment key and CSR, and with renew a
// second key and CSR for the renewal, on all CPUs.
func prepare(ctx context.Context, devs []*simDevice, renew bool) error {
	workers := min(runtime.GOMAXPROCS(0), len(devs))
	next := make(chan *simDevice)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range next {
				var err error
				if d.enrollKey, d.enrollCSR, err = newCSR(d.serial, d.firmware); err != nil {
					errs <- err
					return
				}
				if renew {
					if d.renewKey, d.renewCSR, err = newCSR(d.serial, d.firmware); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	var err error
feed:
	for _, d := range devs {
		if err = ctx.Err(); err != nil {
			break
		}
		select {
		case next <- d:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	close(errs)
	if err != nil {
		return err
	}
	return <-errs
}

// clientCert is the device's current LDevID with the intermediates, ready
// for a handshake: its own chain if the answer gave one, else
// intermediates.
func (d *simDevice) clientCert(intermediates [][]byte) tls.Certificate {
	if d.ldevidChain != nil {
		intermediates = rawsOf(d.ldevidChain)
	}
	chain := make([][]byte, 0, 1+len(intermediates))
	chain = append(chain, d.ldevid.Raw)
	chain = append(chain, intermediates...)
	return tls.Certificate{Certificate: chain, PrivateKey: d.ldevidKey, Leaf: d.ldevid}
}

func rawsOf(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}
