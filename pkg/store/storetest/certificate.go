package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/device"
	"github.com/embark-iot/embark/pkg/store"
)

// serialsOf returns the serials of cs in order.
func serialsOf(cs []device.Certificate) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = c.Serial
	}
	return out
}

// certsOf returns the serials CertificatesOf lists for id.
func certsOf(t *testing.T, s store.Store, id string) []string {
	t.Helper()
	var out []string
	view(t, s, func(r store.Reader) error {
		cs, err := r.CertificatesOf(id)
		out = serialsOf(cs)
		return err
	})
	return out
}

func testCertificate(t *testing.T, open Opener) {
	t.Run("ok/put-get", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		c := newCert(d.ID, "7f3a01", t0)
		putCerts(t, s, c)
		view(t, s, func(r store.Reader) error {
			got, err := r.Certificate(c.Serial)
			if err != nil {
				return err
			}
			sameCert(t, "Certificate", got, c)
			cs, err := r.CertificatesOf(d.ID)
			if err != nil {
				return err
			}
			if len(cs) != 1 {
				t.Fatalf("CertificatesOf = %q, want [%s]", serialsOf(cs), c.Serial)
			}
			sameCert(t, "CertificatesOf[0]", cs[0], c)
			return nil
		})
	})

	t.Run("ok/replace", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		c := newCert(d.ID, "7f3a01", t0)
		putCerts(t, s, c)
		c.Status = device.CertRevoked
		c.StatusAt = t0.Add(time.Hour)
		c.Reason = "key compromise"
		putCerts(t, s, c)
		view(t, s, func(r store.Reader) error {
			got, err := r.Certificate(c.Serial)
			if err != nil {
				return err
			}
			sameCert(t, "Certificate after replace", got, c)
			return nil
		})
		if got := certsOf(t, s, d.ID); !slices.Equal(got, []string{c.Serial}) {
			t.Fatalf("CertificatesOf after replace = %q, want [%s]", got, c.Serial)
		}
	})

	t.Run("ok/of-device-oldest-first-then-serial", func(t *testing.T) {
		s := open(t)
		ds := putDevices(t, s, newDevice("SN-1"), newDevice("SN-2"))
		putCerts(t, s,
			newCert(ds[0].ID, "0a", t0.Add(2*time.Hour)),
			newCert(ds[0].ID, "ff", t0),
			newCert(ds[1].ID, "05", t0.Add(-time.Hour)), // another device
			newCert(ds[0].ID, "0b", t0),
			newCert(ds[0].ID, "01", t0.Add(time.Hour)),
		)
		if got, want := certsOf(t, s, ds[0].ID), []string{"0b", "ff", "01", "0a"}; !slices.Equal(got, want) {
			t.Fatalf("CertificatesOf = %q, want %q", got, want)
		}
		if got, want := certsOf(t, s, ds[1].ID), []string{"05"}; !slices.Equal(got, want) {
			t.Fatalf("CertificatesOf(other device) = %q, want %q", got, want)
		}
	})

	t.Run("ok/of-device-prefix-is-not-enough", func(t *testing.T) {
		// "acme:SN-1" must not list the certificates of "acme:SN-10".
		s := open(t)
		ds := putDevices(t, s, newDevice("SN-1"), newDevice("SN-10"))
		putCerts(t, s, newCert(ds[1].ID, "10", t0), newCert(ds[0].ID, "01", t0))
		if got, want := certsOf(t, s, ds[0].ID), []string{"01"}; !slices.Equal(got, want) {
			t.Fatalf("CertificatesOf(SN-1) = %q, want %q", got, want)
		}
	})

	t.Run("ok/of-device-none", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		if got := certsOf(t, s, d.ID); len(got) != 0 {
			t.Fatalf("CertificatesOf(no certificates) = %q, want none", got)
		}
		if got := certsOf(t, s, device.ID("acme", "SN-404")); len(got) != 0 {
			t.Fatalf("CertificatesOf(unknown device) = %q, want none", got)
		}
	})

	t.Run("ok/replace-under-another-device-moves-index", func(t *testing.T) {
		s := open(t)
		ds := putDevices(t, s, newDevice("SN-1"), newDevice("SN-2"))
		c := newCert(ds[0].ID, "aa", t0)
		putCerts(t, s, c)
		c.DeviceID = ds[1].ID
		putCerts(t, s, c)
		if got := certsOf(t, s, ds[0].ID); len(got) != 0 {
			t.Fatalf("CertificatesOf(old device) = %q, want none", got)
		}
		if got := certsOf(t, s, ds[1].ID); !slices.Equal(got, []string{"aa"}) {
			t.Fatalf("CertificatesOf(new device) = %q, want [aa]", got)
		}
	})

	t.Run("ok/delete-removes-index", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		putCerts(t, s, newCert(d.ID, "01", t0), newCert(d.ID, "02", t0.Add(time.Hour)))
		update(t, s, func(tx store.Tx) error { return tx.DeleteCertificate("01") })
		view(t, s, func(r store.Reader) error {
			if _, err := r.Certificate("01"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Certificate(deleted): err = %v, want store.ErrNotFound", err)
			}
			return nil
		})
		if got := certsOf(t, s, d.ID); !slices.Equal(got, []string{"02"}) {
			t.Fatalf("CertificatesOf after delete = %q, want [02]", got)
		}
	})

	t.Run("fail/not-found", func(t *testing.T) {
		s := open(t)
		d := putDevices(t, s, newDevice("SN-1"))[0]
		putCerts(t, s, newCert(d.ID, "01", t0))
		view(t, s, func(r store.Reader) error {
			if _, err := r.Certificate("02"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Certificate(unknown): err = %v, want store.ErrNotFound", err)
			}
			return nil
		})
	})

	tests := []struct {
		name    string
		write   func(tx store.Tx, deviceID string) error
		wantErr error // nil: any error
	}{
		{"fail/delete-unknown", func(tx store.Tx, _ string) error {
			return tx.DeleteCertificate("02")
		}, store.ErrNotFound},
		{"fail/put-empty-serial", func(tx store.Tx, id string) error {
			return tx.PutCertificate(newCert(id, "", t0))
		}, nil},
		{"fail/put-empty-device-id", func(tx store.Tx, _ string) error {
			return tx.PutCertificate(newCert("", "03", t0))
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			d := putDevices(t, s, newDevice("SN-1"))[0]
			putCerts(t, s, newCert(d.ID, "01", t0))
			before := takeSnapshot(t, s, "")
			var writeErr error
			update(t, s, func(tx store.Tx) error {
				writeErr = tt.write(tx, d.ID)
				return nil
			})
			switch {
			case writeErr == nil:
				t.Fatalf("write succeeded, want an error")
			case tt.wantErr != nil && !errors.Is(writeErr, tt.wantErr):
				t.Fatalf("write: err = %v, want %v", writeErr, tt.wantErr)
			}
			unchanged(t, s, before, "")
		})
	}
}

func testManufacturer(t *testing.T, open Opener) {
	t.Run("ok/put-get", func(t *testing.T) {
		s := open(t)
		m := newManufacturer("acme")
		m.Intermediates = [][]byte{[]byte("intermediate-der")}
		update(t, s, func(tx store.Tx) error { return tx.PutManufacturer(m) })
		view(t, s, func(r store.Reader) error {
			got, err := r.Manufacturer("acme")
			if err != nil {
				return err
			}
			sameManufacturer(t, "Manufacturer", got, m)
			return nil
		})
	})
	t.Run("ok/replace", func(t *testing.T) {
		s := open(t)
		m := newManufacturer("acme")
		update(t, s, func(tx store.Tx) error { return tx.PutManufacturer(m) })
		m.ManifestRevision = 4
		m.Roots = append(m.Roots, []byte("second root"))
		update(t, s, func(tx store.Tx) error { return tx.PutManufacturer(m) })
		view(t, s, func(r store.Reader) error {
			got, err := r.Manufacturer("acme")
			if err != nil {
				return err
			}
			sameManufacturer(t, "Manufacturer after replace", got, m)
			all, err := r.Manufacturers()
			if err != nil {
				return err
			}
			if len(all) != 1 {
				t.Fatalf("Manufacturers after replace: %d, want 1", len(all))
			}
			return nil
		})
	})
	t.Run("ok/sorted-by-name", func(t *testing.T) {
		s := open(t)
		update(t, s, func(tx store.Tx) error {
			for _, n := range []string{"zeta", "acme", "m2m.example", "beta-labs"} {
				if err := tx.PutManufacturer(newManufacturer(n)); err != nil {
					return err
				}
			}
			return nil
		})
		view(t, s, func(r store.Reader) error {
			ms, err := r.Manufacturers()
			if err != nil {
				return err
			}
			var names []string
			for _, m := range ms {
				names = append(names, m.Name)
			}
			if want := []string{"acme", "beta-labs", "m2m.example", "zeta"}; !slices.Equal(names, want) {
				t.Fatalf("Manufacturers = %q, want %q", names, want)
			}
			sameManufacturer(t, "Manufacturers[0]", ms[0], newManufacturer("acme"))
			return nil
		})
	})
	t.Run("ok/none", func(t *testing.T) {
		s := open(t)
		view(t, s, func(r store.Reader) error {
			ms, err := r.Manufacturers()
			if err != nil {
				return err
			}
			if len(ms) != 0 {
				t.Fatalf("Manufacturers of an empty store = %d", len(ms))
			}
			return nil
		})
	})
	t.Run("fail/not-found", func(t *testing.T) {
		s := open(t)
		update(t, s, func(tx store.Tx) error { return tx.PutManufacturer(newManufacturer("acme")) })
		view(t, s, func(r store.Reader) error {
			if _, err := r.Manufacturer("globex"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("Manufacturer(unknown): err = %v, want store.ErrNotFound", err)
			}
			return nil
		})
	})
	t.Run("fail/empty-name", func(t *testing.T) {
		s := open(t)
		before := takeSnapshot(t, s)
		var putErr error
		update(t, s, func(tx store.Tx) error {
			putErr = tx.PutManufacturer(newManufacturer(""))
			return nil
		})
		if putErr == nil {
			t.Fatalf("PutManufacturer(empty name) succeeded")
		}
		unchanged(t, s, before)
	})
}
