package registrar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/voucher"
)

// registrationAnswer is the MASA's answer to a registration.
type registrationAnswer struct {
	Owner          string `json:"owner"`
	OwnerKey       string `json:"owner_key"`
	DomainCASHA256 string `json:"domain_ca_sha256"`
	Devices        int    `json:"devices"`
}

// SetMASA sets the MASA of a trusted manufacturer: it registers Embark's
// domain with the MASA at url (authenticated by ca, PEM, if given, else by
// the manufacturer's trusted roots) and stores the setting once the MASA
// accepted. actor is recorded in the audit log. Nothing is stored if the
// MASA refuses or cannot be reached.
func (r *Registrar) SetMASA(ctx context.Context, manufacturer, url, ca, actor string) (MASASetting, error) {
	u, err := checkURL(url)
	if err != nil {
		return MASASetting{}, err
	}
	var l *link
	err = r.cfg.Store.View(ctx, func(rd store.Reader) error {
		var err error
		l, err = readLink(rd, manufacturer, &r.links)
		if errors.Is(err, ErrNoMASA) {
			err = nil
		}
		return err
	})
	if err != nil {
		return MASASetting{}, err
	}
	roots := l.roots
	if ca != "" {
		if roots, err = parseCAs(ca); err != nil {
			return MASASetting{}, err
		}
	}
	s := MASASetting{Manufacturer: manufacturer, URL: u.String(), CA: ca}
	reg, err := voucher.SignRegistration(r.cfg.Owner.Key, voucher.Registration{Owner: r.cfg.Owner.Name, OwnerKey: r.cfg.Owner.Key.Public(),
		DomainCA: r.cfg.DomainCA(), CreatedOn: r.cfg.Clock()})
	if err != nil {
		return MASASetting{}, err
	}
	cl, err := r.clients.get(s.URL, roots, true)
	if err != nil {
		return MASASetting{}, err
	}
	pctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	b, cs, err := post(pctx, cl, s.URL, voucher.PathMASARegister, voucher.MediaTypeRegistration, reg)
	if err != nil {
		return MASASetting{}, fmt.Errorf("registrar: register with the MASA of %s at %s: %w", manufacturer, s.URL, err)
	}
	var ans registrationAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return MASASetting{}, fmt.Errorf("%w: registration answer: %v", ErrMASA, err)
	}
	sum := sha256.Sum256(r.cfg.DomainCA().Raw)
	if ans.OwnerKey != r.cfg.Owner.KeyID() || ans.DomainCASHA256 != hex.EncodeToString(sum[:]) {
		return MASASetting{}, fmt.Errorf("%w: the MASA registered key %s and domain %s, not ours", ErrMASA, ans.OwnerKey, ans.DomainCASHA256)
	}
	s.RegisteredAt, s.OwnerKey, s.DomainCASHA256, s.Devices = r.cfg.Clock().UTC(), ans.OwnerKey, ans.DomainCASHA256, ans.Devices
	if cs != nil {
		s.TLS = voucher.DescribeTLS(*cs)
	}
	val, err := json.Marshal(s)
	if err != nil {
		return MASASetting{}, err
	}
	err = r.cfg.Store.Update(ctx, func(tx store.Tx) error {
		if err := tx.PutRecord(RecordKind, manufacturer, val); err != nil {
			return err
		}
		_, err := tx.AppendAudit(audit.Entry{Time: s.RegisteredAt, Actor: actor, Action: "masa_set", Outcome: "ok",
			Detail: fmt.Sprintf("MASA of %s: %s; domain registered (owner key %s, %d devices, %s)", manufacturer, s.URL, s.OwnerKey, s.Devices, s.TLS)})
		return err
	})
	if err != nil {
		return MASASetting{}, fmt.Errorf("registrar: store the MASA setting: %w", err)
	}
	r.log.Info("registrar: MASA set", "manufacturer", manufacturer, "url", s.URL, "devices", s.Devices, "tls", s.TLS)
	return s, nil
}

// MASA returns the MASA setting of a manufacturer (ErrNoMASA if none).
func (r *Registrar) MASA(ctx context.Context, manufacturer string) (MASASetting, error) {
	var s MASASetting
	err := r.cfg.Store.View(ctx, func(rd store.Reader) error {
		b, err := rd.Record(RecordKind, manufacturer)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w for %q", ErrNoMASA, manufacturer)
		}
		if err != nil {
			return err
		}
		return json.Unmarshal(b, &s)
	})
	return s, err
}
