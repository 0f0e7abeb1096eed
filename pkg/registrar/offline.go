package registrar

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/embark-iot/embark/pkg/voucher"
)

// VoucherExt ends the file name of a prefetched voucher.
const VoucherExt = ".voucher"

// VoucherPath is where a prefetched voucher of a device lives in dir.
func VoucherPath(dir, manufacturer, serial string) (string, error) {
	if !safeName(manufacturer) || !safeName(serial) {
		return "", fmt.Errorf("registrar: %q/%q cannot name a voucher file", manufacturer, serial)
	}
	return filepath.Join(dir, manufacturer, serial+VoucherExt), nil
}

func safeName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00") && len(s) <= 200
}

// offline returns the prefetched nonceless voucher of a device if there is
// one that still holds: for this serial, pinning Embark's root, not
// expired.
func (r *Registrar) offline(manufacturer, serial string) ([]byte, bool) {
	if r.cfg.VoucherDir == "" {
		return nil, false
	}
	path, err := VoucherPath(r.cfg.VoucherDir, manufacturer, serial)
	if err != nil {
		return nil, false
	}
	b, err := os.ReadFile(path)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			r.log.Warn("registrar: prefetched voucher", "file", path, "err", err)
		}
		return nil, false
	}
	v, _, err := voucher.Parse(b)
	now := r.cfg.Clock()
	switch {
	case err != nil:
		r.log.Warn("registrar: prefetched voucher", "file", path, "err", err)
		return nil, false
	case v.SerialNumber != serial || !v.Nonceless() || !bytes.Equal(v.PinnedDomainCert, r.cfg.DomainCA().Raw):
		r.log.Warn("registrar: prefetched voucher does not fit", "file", path, "serial", v.SerialNumber, "nonceless", v.Nonceless())
		return nil, false
	case !now.Before(v.ExpiresOn):
		r.log.Info("registrar: prefetched voucher expired", "file", path, "expires_on", v.ExpiresOn)
		return nil, false
	}
	return b, true
}
