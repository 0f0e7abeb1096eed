package fleet

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"

	"github.com/embark-iot/embark/firmware-sim/estclient"
	"github.com/embark-iot/embark/firmware-sim/factory"
	"github.com/embark-iot/embark/pkg/voucher"
)

// PhaseZeroTouch is the zero-touch enrollment: voucher over plain CoAP,
// pinned domain, a session verified against it, enrollment on it.
const PhaseZeroTouch = "zero-touch"

// ModeCompare enrolls the first half of the devices with the out-of-band
// root (phase "enroll") and the second half zero-touch (phase
// "zero-touch"), in the same run, and reports the zero-touch rate as a
// fraction of the other: the cost of the voucher round trip.
const ModeCompare = "compare"

// zeroTouch reports whether devices learn whom to trust from vouchers:
// no out-of-band root was given.
func (o Options) zeroTouch() bool { return o.RootFile == "" }

// loadAnchors reads the voucher anchors of the factory's firmware image.
func loadAnchors(dir string) ([]*x509.Certificate, error) {
	fw, err := factory.ReadFirmware(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: zero touch needs the firmware image's voucher anchors: %w", ErrOptions, err)
	}
	return fw.VoucherAnchors, nil
}

// runVoucher runs the enrollment phases of a zero-touch run or of a
// comparison, and leaves the runner trusting the domain the devices pinned,
// for the phases that follow (renew, stay).
func (r *runner) runVoucher(ctx context.Context, devs []*simDevice) ([]Report, error) {
	if r.o.Mode == ModeCompare {
		half := len(devs) / 2
		classic := r.phase(ctx, r.enrollPhase(), devs[:half])
		if err := ctx.Err(); err != nil {
			return []Report{classic}, err
		}
		zt := r.phase(ctx, r.zeroTouchPhase(), devs[half:])
		if classic.PerSecond > 0 {
			zt.OfCeiling, zt.Ceiling = zt.PerSecond/classic.PerSecond, PhaseEnroll
		}
		return []Report{classic, zt}, ctx.Err()
	}
	zt := r.phase(ctx, r.zeroTouchPhase(), devs)
	reports := []Report{zt}
	if err := ctx.Err(); err != nil {
		return reports, err
	}
	if err := r.adoptDomain(devs); err != nil {
		return reports, err
	}
	if r.o.Mode == ModeBoth && r.root != nil {
		// The ceiling comes second: before its voucher a device trusts
		// no server.
		ceiling := r.phase(ctx, r.crtsPhase(), enrolled(devs))
		if ceiling.PerSecond > 0 {
			reports[0].OfCeiling, reports[0].Ceiling = zt.PerSecond/ceiling.PerSecond, ceiling.Phase
		}
		reports = append(reports, ceiling)
	}
	return reports, ctx.Err()
}

// zeroTouchPhase is one device's constrained BRSKI onboarding: a voucher
// request signed with its IDevID over plain CoAP, the voucher for its
// fresh nonce verified against its firmware's anchors, a DTLS/TLS session
// whose server must chain to the pinned domain certificate, voucher status
// telemetry, the enrollment on that session, the certificate checked against the verified chain,
// and enrollment status telemetry. A voucher the device refuses is final.
func (r *runner) zeroTouchPhase() phaseSpec {
	return phaseSpec{
		name: PhaseZeroTouch,
		attempt: func(ctx context.Context, d *simDevice) (*x509.Certificate, error) {
			res, err := estclient.ZeroTouch(ctx, estclient.ZeroTouchConfig{
				VoucherTarget:  r.o.VoucherTarget,
				Config:         estclient.Config{Target: r.o.Target, Certificate: &d.idevid, Timeout: r.o.Timeout, Logger: r.log},
				Serial:         d.serial,
				Anchors:        r.anchors,
				Now:            r.now,
				AllowNonceless: r.o.AllowNonceless,
				Signer:         d.pledgeSigner,
			})
			if err != nil {
				return nil, err
			}
			defer res.Client.Close()
			if res.TelemetryErr != nil {
				r.log.Debug("voucher status telemetry", "device", d.serial, "err", res.TelemetryErr)
			}
			cert, err := res.Client.Enroll(ctx, d.enrollCSR)
			if err != nil {
				return nil, err
			}
			verr := verifyPinned(d.enrollKey, cert, res.Chain, r.now())
			st := voucher.Status{OK: verr == nil}
			if verr != nil {
				st.Reason = verr.Error()
			}
			if err := res.Client.ReportEnrollStatus(ctx, st); err != nil {
				r.log.Debug("enroll status telemetry", "device", d.serial, "err", err)
			}
			if verr != nil {
				return nil, verr
			}
			d.domain = res.Chain
			return cert, nil
		},
		commit: func(d *simDevice, cert *x509.Certificate) {
			d.ldevid, d.ldevidKey = cert, d.enrollKey
		},
	}
}

// verifyPinned checks an LDevID received on a session verified against a
// pinned domain: it carries the CSR key, is a device certificate valid
// now, and is signed by one of the CA certificates of the verified chain.
func verifyPinned(key *ecdsa.PrivateKey, cert *x509.Certificate, chain []*x509.Certificate, now interface{ Unix() int64 }) error {
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return ErrKeyMismatch
	}
	if t := now.Unix(); t < cert.NotBefore.Unix() || t > cert.NotAfter.Unix() {
		return fmt.Errorf("%w: outside its validity", ErrUntrustedCert)
	}
	if cert.IsCA || !slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		return fmt.Errorf("%w: not a device certificate (CA, or no client auth)", ErrUntrustedCert)
	}
	for _, ca := range chain[1:] {
		if bytes.Equal(cert.RawIssuer, ca.RawSubject) && cert.CheckSignatureFrom(ca) == nil {
			return nil
		}
	}
	return fmt.Errorf("%w: issuer %q is not in the verified chain", ErrUntrustedCert, cert.Issuer)
}

// ErrDomains reports devices of one run that pinned different domains.
var ErrDomains = errors.New("fleet: devices pinned different domains")

// adoptDomain makes the domain the devices pinned (the root at the end of
// their verified chains, and the intermediates below it) what the runner
// trusts for the phases that follow.
func (r *runner) adoptDomain(devs []*simDevice) error {
	for _, d := range devs {
		if len(d.domain) < 2 {
			continue
		}
		root := d.domain[len(d.domain)-1]
		if r.root == nil {
			r.root = root
			r.roots.AddCert(root)
			for _, c := range d.domain[1 : len(d.domain)-1] {
				r.intermediates = append(r.intermediates, c.Raw)
				r.interPool.AddCert(c)
				r.inters = append(r.inters, c)
			}
			continue
		}
		if !root.Equal(r.root) {
			return fmt.Errorf("%w: %s and %s", ErrDomains, r.root.Subject, root.Subject)
		}
	}
	return nil
}

// prepareZeroTouch loads the firmware's voucher anchors and each device's
// voucher request signer.
func (r *runner) prepareZeroTouch(devs []*simDevice) error {
	if r.o.Transport != TransportCoAP {
		return fmt.Errorf("%w: zero touch runs over CoAP; give --ca for MQTT", ErrOptions)
	}
	anchors, err := loadAnchors(r.o.FactoryDir)
	if err != nil {
		return err
	}
	r.anchors = anchors
	for _, d := range devs {
		key, ok := d.idevid.PrivateKey.(*ecdsa.PrivateKey)
		if !ok {
			return fmt.Errorf("%w: device %q: the IDevID key is a %T", ErrOptions, d.serial, d.idevid.PrivateKey)
		}
		if d.pledgeSigner, err = voucher.NewRequestSigner(key, d.idevidChain[:1]); err != nil {
			return fmt.Errorf("fleet: device %q: %w", d.serial, err)
		}
	}
	return nil
}

// Reason codes of vouchers a device refuses, and of a server that its
// voucher does not authenticate.
const (
	ReasonServerNotPinned      = "server_not_pinned"      // the server does not chain to the pinned domain
	ReasonVoucherWrongNonce    = "voucher_wrong_nonce"    // the voucher answers another request
	ReasonVoucherWrongSerial   = "voucher_wrong_serial"   // the voucher is for another device
	ReasonVoucherUnknownSigner = "voucher_unknown_signer" // signed by someone else than the firmware's anchors
	ReasonVoucherBadSignature  = "voucher_bad_signature"  // altered after signing
	ReasonVoucherExpired       = "voucher_expired"        // expires-on passed
	ReasonVoucherNotYetValid   = "voucher_not_yet_valid"  // created in the future
	ReasonVoucherNonceless     = "voucher_nonceless"      // a nonceless voucher the device does not accept
	ReasonVoucherMalformed     = "voucher_malformed"      // not a voucher
)

// voucherReason names a voucher the device refused.
func voucherReason(err error) (string, bool) {
	for _, s := range []struct {
		err    error
		reason string
	}{
		{voucher.ErrNotPinned, ReasonServerNotPinned},
		{voucher.ErrWrongNonce, ReasonVoucherWrongNonce},
		{voucher.ErrWrongSerial, ReasonVoucherWrongSerial},
		{voucher.ErrUnknownSigner, ReasonVoucherUnknownSigner},
		{voucher.ErrBadSignature, ReasonVoucherBadSignature},
		{voucher.ErrExpired, ReasonVoucherExpired},
		{voucher.ErrNotYetValid, ReasonVoucherNotYetValid},
		{voucher.ErrNonceless, ReasonVoucherNonceless},
		{voucher.ErrMalformed, ReasonVoucherMalformed},
		{voucher.ErrTooLarge, ReasonVoucherMalformed},
	} {
		if errors.Is(err, s.err) {
			return s.reason, true
		}
	}
	return "", false
}
