package factory

import (
	"fmt"
	"os"
	"path/filepath"
)

// File names in the output directory.
const (
	RootCertFile         = "root.pem"
	RootKeyFile          = "root-key.pem"
	IntermediateCertFile = "intermediate.pem"
	IntermediateKeyFile  = "intermediate-key.pem"
	SignerKeyFile        = "manifest-signer.key"
	SignerPubFile        = "manifest-signer.pub"
	TrustFile            = "trust.json"
	ManifestFile         = "manifest.json"
	DevicesFile          = "devices.jsonl"
)

// pendingFile is a file written under a temporary name in its final
// directory, renamed into place by commit.
type pendingFile struct {
	f    *os.File
	path string
}

func createPending(path string, perm os.FileMode) (*pendingFile, error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return &pendingFile{f: f, path: path}, nil
}

// finish flushes the file to disk and closes it.
func (p *pendingFile) finish() error {
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", p.path, err)
	}
	if err := p.f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", p.path, err)
	}
	return nil
}

// commit renames the finished file into place.
func (p *pendingFile) commit() error {
	if err := os.Rename(p.f.Name(), p.path); err != nil {
		return fmt.Errorf("rename %s: %w", p.path, err)
	}
	return nil
}

// discard removes the temporary file; harmless after commit.
func (p *pendingFile) discard() {
	p.f.Close()
	os.Remove(p.f.Name())
}

// writeFileAtomic replaces path with data, durably.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	p, err := createPending(path, perm)
	if err != nil {
		return err
	}
	defer p.discard()
	if _, err := p.f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := p.finish(); err != nil {
		return err
	}
	return p.commit()
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
