package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"slices"

	"github.com/embark-iot/embark/firmware-sim/mqttclient"
	"github.com/embark-iot/embark/pkg/mqttwire"
)

// mqttConfig is the connection of device d with cert (whose parsed chain
// is chain, leaf first).
func (r *runner) mqttConfig(d *simDevice, cert tls.Certificate, chain []*x509.Certificate) mqttclient.Config {
	return mqttclient.Config{
		Target:      r.o.Target,
		Roots:       r.roots,
		Certificate: cert,
		Chain:       chain,
		DeviceID:    d.id,
		Timeout:     r.o.Timeout,
		Verifier:    r.verifier,
		Logger:      r.log,
	}
}

// idevidConfig connects with the device's IDevID.
func (r *runner) idevidConfig(d *simDevice) mqttclient.Config {
	return r.mqttConfig(d, d.idevid, d.idevidChain)
}

// ldevidConfig connects with the device's current LDevID.
func (r *runner) ldevidConfig(d *simDevice) mqttclient.Config {
	cert := d.clientCert(r.intermediates)
	var chain []*x509.Certificate
	if d.ldevidChain != nil {
		chain = append([]*x509.Certificate{d.ldevid}, d.ldevidChain...)
	}
	return r.mqttConfig(d, cert, chain)
}

// claims are the firmware claims that go with the device's CSRs.
func (d *simDevice) claims() *mqttwire.Claims {
	if d.firmware.Empty() {
		return nil
	}
	return &mqttwire.Claims{FirmwareVersion: d.firmware.FirmwareVersion, FirmwareSHA256: d.firmware.FirmwareSHA256}
}

// connectPhase is the ceiling over MQTT: a TLS connect with the IDevID and
// one QoS 1 publish to the device's nonce topic without a response topic
// (Embark acknowledges and drops it), then a disconnect.
func (r *runner) connectPhase() phaseSpec {
	return phaseSpec{
		name: PhaseConnect,
		attempt: func(ctx context.Context, d *simDevice) (*x509.Certificate, error) {
			c := r.idevidConfig(d)
			c.PublishOnly = true
			conn, err := mqttclient.Dial(ctx, c)
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			return nil, conn.PublishQoS1(ctx, mqttwire.RequestTopic(d.id, mqttwire.OpNonce), nil)
		},
	}
}

func (r *runner) mqttEnrollPhase() phaseSpec {
	return phaseSpec{
		name: PhaseEnroll,
		attempt: func(ctx context.Context, d *simDevice) (*x509.Certificate, error) {
			conn, err := mqttclient.Dial(ctx, r.idevidConfig(d))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			iss, err := conn.Enroll(ctx, d.enrollCSR, d.claims())
			if err != nil {
				return nil, err
			}
			return r.answered(d, iss)
		},
		verify: func(d *simDevice, cert *x509.Certificate) error {
			return r.verifyMQTT(d, d.enrollKey, cert)
		},
		commit: func(d *simDevice, cert *x509.Certificate) {
			d.ldevid, d.ldevidKey, d.ldevidChain = cert, d.enrollKey, d.answerChain
		},
	}
}

func (r *runner) mqttRenewPhase() phaseSpec {
	return phaseSpec{
		name: PhaseRenew,
		attempt: func(ctx context.Context, d *simDevice) (*x509.Certificate, error) {
			conn, err := mqttclient.Dial(ctx, r.ldevidConfig(d))
			if err != nil {
				return nil, err
			}
			defer conn.Close()
			iss, err := conn.Renew(ctx, d.renewCSR, d.claims())
			if err != nil {
				return nil, err
			}
			return r.answered(d, iss)
		},
		verify: func(d *simDevice, cert *x509.Certificate) error {
			return r.verifyMQTT(d, d.renewKey, cert)
		},
		commit: func(d *simDevice, cert *x509.Certificate) {
			d.ldevid, d.ldevidKey, d.ldevidChain = cert, d.renewKey, d.answerChain
		},
	}
}

// answered keeps the chain of an answer for the device's commit, learning
// its intermediates, and returns the certificate.
func (r *runner) answered(d *simDevice, iss *mqttclient.Issued) (*x509.Certificate, error) {
	chain, err := r.learnChain(iss.Chain)
	if err != nil {
		return nil, err
	}
	d.answerChain = chain
	return iss.Certificate, nil
}

// learnChain returns the intermediates of an answer's chain (intermediate
// first) as the runner's shared, verified copies. An intermediate not seen
// before must chain to the Embark root; it is verified once and kept, so
// that a certificate then costs one signature check ([runner.verifyIssued]).
func (r *runner) learnChain(chain []*x509.Certificate) ([]*x509.Certificate, error) {
	out := make([]*x509.Certificate, 0, len(chain))
	for _, c := range chain {
		if c.Equal(r.root) {
			continue
		}
		known := r.knownIntermediate(c)
		if known == nil {
			pool := x509.NewCertPool()
			for _, o := range chain {
				pool.AddCert(o)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: r.roots, Intermediates: pool, CurrentTime: r.now(),
				KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil || !c.IsCA {
				return nil, fmt.Errorf("%w: intermediate %q: not a CA under the root (%v)", ErrUntrustedCert, c.Subject, err)
			}
			r.interMu.Lock()
			if known = r.knownIntermediateLocked(c); known == nil {
				known = c
				r.inters = append(slices.Clip(r.inters), c)
			}
			r.interMu.Unlock()
		}
		out = append(out, known)
	}
	return out, nil
}

func (r *runner) knownIntermediate(c *x509.Certificate) *x509.Certificate {
	r.interMu.RLock()
	defer r.interMu.RUnlock()
	return r.knownIntermediateLocked(c)
}

func (r *runner) knownIntermediateLocked(c *x509.Certificate) *x509.Certificate {
	for _, in := range r.inters {
		if in.Equal(c) {
			return in
		}
	}
	return nil
}

// verifyMQTT checks a certificate issued over MQTT: as over CoAP, and it
// must name the device (URI SAN = the device URN).
func (r *runner) verifyMQTT(d *simDevice, key *ecdsa.PrivateKey, cert *x509.Certificate) error {
	if err := r.verifyIssued(key, cert); err != nil {
		return err
	}
	if !slices.ContainsFunc(cert.URIs, func(u *url.URL) bool { return u.String() == d.id }) {
		return fmt.Errorf("%w: want URI SAN %q", ErrWrongIdentity, d.id)
	}
	return nil
}
