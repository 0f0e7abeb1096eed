package factory

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestVoucherFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	mustRun(t, Options{Out: dir, Count: 2})
	m, err := LoadManufacturer(dir)
	if err != nil {
		t.Fatal(err)
	}
	fw, err := ReadFirmware(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fw.Manufacturer != "acme" || len(fw.VoucherAnchors) != 1 || !fw.VoucherAnchors[0].Equal(m.VoucherCert) {
		t.Fatalf("firmware %+v does not carry the voucher signer", fw)
	}
	if err := m.VoucherCert.CheckSignatureFrom(m.Root); err != nil {
		t.Fatalf("voucher signer not issued by the root: %v", err)
	}
	if !m.VoucherKey.PublicKey.Equal(m.VoucherCert.PublicKey) || m.ManifestSigner == nil {
		t.Fatal("voucher key or manifest signer missing")
	}

	t.Run("ok/kept across runs", func(t *testing.T) {
		mustRun(t, Options{Out: dir, Count: 1})
		m2, err := LoadManufacturer(dir)
		if err != nil {
			t.Fatal(err)
		}
		if !m2.VoucherCert.Equal(m.VoucherCert) {
			t.Fatal("a second run replaced the voucher signer")
		}
	})
	t.Run("fail/key of another signer", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "other")
		mustRun(t, Options{Out: other, Count: 1})
		k, err := os.ReadFile(filepath.Join(other, VoucherKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, VoucherKeyFile), k)
		if _, err := LoadManufacturer(dir); !errors.Is(err, ErrInconsistent) {
			t.Fatalf("LoadManufacturer = %v, want ErrInconsistent", err)
		}
		before, _ := os.ReadFile(filepath.Join(dir, ManifestFile))
		if _, err := Run(t.Context(), Options{Out: dir, Count: 1, Clock: fixedClock}); !errors.Is(err, ErrInconsistent) {
			t.Fatalf("Run = %v, want ErrInconsistent", err)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, ManifestFile)); string(after) != string(before) {
			t.Fatal("a refused run changed the manifest")
		}
	})
	t.Run("fail/firmware without anchors", func(t *testing.T) {
		write(t, filepath.Join(dir, FirmwareFile), []byte(`{"manufacturer":"acme","voucher_anchors":[]}`))
		if _, err := ReadFirmware(dir); !errors.Is(err, ErrMalformed) {
			t.Fatalf("ReadFirmware = %v", err)
		}
	})
}
