package registrar

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/voucher"
)

// Bounds of a prefetch.
const (
	// MaxPrefetch bounds the devices of one prefetch.
	MaxPrefetch = 100000
	// DefaultPrefetchLifetime is the expiry asked for by default.
	DefaultPrefetchLifetime = 7 * 24 * time.Hour
)

// Prefetched is the outcome of a prefetch for one device.
type Prefetched struct {
	DeviceID     string `json:"device"`
	Manufacturer string `json:"manufacturer"`
	Serial       string `json:"serial"`
	// Voucher is the nonceless COSE voucher; nil if Error is set.
	Voucher   []byte    `json:"voucher,omitempty"`
	ExpiresOn time.Time `json:"expires_on,omitzero"`
	Error     string    `json:"error,omitempty"`
}

// Prefetch obtains nonceless vouchers, valid for about lifetime (the MASA
// may shorten it), for the devices named by ids, or with pending for every
// device of the registry that has not onboarded yet (expected or held),
// for sites that will onboard them while the MASA cannot be reached. The
// vouchers are returned, not stored: the operator places them in the
// voucher directory of the Embark that will serve them. One audit entry
// records the prefetch.
func (r *Registrar) Prefetch(ctx context.Context, ids []string, pending bool, lifetime time.Duration, actor string) ([]Prefetched, error) {
	if lifetime <= 0 {
		lifetime = DefaultPrefetchLifetime
	}
	if pending {
		err := r.cfg.Store.View(ctx, func(rd store.Reader) error {
			return rd.Devices("", func(d device.Device) (bool, error) {
				if d.State == device.Expected || d.State == device.Held {
					ids = append(ids, d.ID)
				}
				return len(ids) < MaxPrefetch, nil
			})
		})
		if err != nil {
			return nil, fmt.Errorf("registrar: prefetch: %w", err)
		}
	}
	if len(ids) > MaxPrefetch {
		return nil, fmt.Errorf("%w: %d devices, at most %d per prefetch", ErrConfig, len(ids), MaxPrefetch)
	}
	out := make([]Prefetched, len(ids))
	links := map[string]*link{}
	linkErr := map[string]error{}
	for i, id := range ids {
		mfr, serial, err := device.ParseID(id)
		out[i] = Prefetched{DeviceID: device.ID(mfr, serial), Manufacturer: mfr, Serial: serial}
		if err != nil {
			out[i].DeviceID, out[i].Error = id, err.Error()
			continue
		}
		if _, ok := links[mfr]; ok || linkErr[mfr] != nil {
			continue
		}
		err = r.cfg.Store.View(ctx, func(rd store.Reader) error {
			l, err := readLink(rd, mfr, &r.links)
			links[mfr] = l
			return err
		})
		if err != nil {
			linkErr[mfr] = err
		}
	}
	expires := r.cfg.Clock().Add(lifetime)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range jobs {
				p := &out[i]
				if err := linkErr[p.Manufacturer]; err != nil {
					p.Error = err.Error()
					continue
				}
				v, exp, err := r.prefetchOne(ctx, links[p.Manufacturer], p.Serial, expires)
				if err != nil {
					p.Error = err.Error()
					continue
				}
				p.Voucher, p.ExpiresOn = v, exp
			}
		})
	}
	for i := range out {
		if out[i].Error != "" {
			continue
		}
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ok := 0
	for _, p := range out {
		if p.Error == "" {
			ok++
		}
	}
	_ = r.audit(ctx, audit.Entry{Actor: actor, Action: "voucher_prefetch", Outcome: "ok",
		Detail: fmt.Sprintf("%d nonceless vouchers obtained, %d refused, asked to expire %s", ok, len(out)-ok, expires.UTC().Format(time.RFC3339))})
	return out, nil
}

func (r *Registrar) prefetchOne(ctx context.Context, l *link, serial string, expires time.Time) ([]byte, time.Time, error) {
	body, err := r.signer.SignRegistrarRequest(voucher.RegistrarRequest{SerialNumber: serial, CreatedOn: r.cfg.Clock(), ExpiresOn: expires})
	if err != nil {
		return nil, time.Time{}, err
	}
	b, err := r.ask(ctx, l, body)
	if err != nil {
		if ref, ok := isRefusal(err); ok {
			return nil, time.Time{}, errors.New(ref.Reason + ": " + ref.Message)
		}
		return nil, time.Time{}, err
	}
	v, _, err := voucher.Parse(b)
	if err != nil {
		return nil, time.Time{}, err
	}
	if v.SerialNumber != serial || !v.Nonceless() || string(v.PinnedDomainCert) != string(r.cfg.DomainCA().Raw) {
		return nil, time.Time{}, fmt.Errorf("%w: the MASA's voucher is not a nonceless voucher for %q pinning this Embark", ErrMASA, serial)
	}
	return b, v.ExpiresOn, nil
}
