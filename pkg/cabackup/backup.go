package cabackup

import (
	"crypto"
	"crypto/hpke"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/embark-iot/embark/pki"
)

// Format constants (see the package documentation).
const (
	Magic   = "EMBARK-CA-BACKUP"
	Version = 1
	// KEMID, KDFID and AEADID are the HPKE (RFC 9180) algorithm
	// identifiers of format version 1: X-Wing (MLKEM768-X25519),
	// HKDF-SHA256, AES-256-GCM.
	KEMID  = 0x647a
	KDFID  = 0x0001
	AEADID = 0x0002
	// Info is the HPKE info string of format version 1.
	Info = "Embark sealed CA backup, format 1"
	// MaxSize bounds a backup file this package reads.
	MaxSize = 1 << 20

	fixedHeader = len(Magic) + 1 + 2 + 2 + 2 + sha256.Size + 2
)

var (
	kdf  = hpke.HKDFSHA256()
	aead = hpke.AES256GCM()
)

// Files are the CA files a backup holds, in this order. root.key is
// optional (a root kept offline); the others are required.
var Files = []string{pki.RootCertFile, pki.RootKeyFile, pki.IntermediateCertFile, pki.IntermediateKeyFile}

// Contents is what a backup holds.
type Contents struct {
	// Created is when the backup was sealed (whole seconds).
	Created time.Time
	// RootSHA256 is the hex SHA-256 of the root certificate (DER).
	RootSHA256 string
	// Files maps CA file names (of [Files]) to their content.
	Files map[string][]byte
}

type payload struct {
	Created int64         `cbor:"1,keyasint"`
	Root    []byte        `cbor:"2,keyasint"`
	Files   []payloadFile `cbor:"3,keyasint"`
}

type payloadFile struct {
	Name string `cbor:"1,keyasint"`
	Data []byte `cbor:"2,keyasint"`
}

var (
	encMode = func() cbor.EncMode {
		m, err := cbor.CoreDetEncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// ReadCA reads the CA files of dir and checks that they form a CA: the
// root self-signed, the intermediate signed by it, each key matching its
// certificate.
func ReadCA(dir string) (Contents, error) {
	c := Contents{Files: map[string][]byte{}}
	for _, name := range Files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) && name == pki.RootKeyFile {
			continue
		}
		if err != nil {
			return Contents{}, fmt.Errorf("cabackup: read CA: %w", err)
		}
		c.Files[name] = b
	}
	if err := readGenerations(dir, c.Files); err != nil {
		return Contents{}, fmt.Errorf("cabackup: read CA: %w", err)
	}
	root, err := checkCA(c.Files)
	if err != nil {
		return Contents{}, fmt.Errorf("cabackup: %s: %w", dir, err)
	}
	c.RootSHA256 = fingerprint(root)
	return c, nil
}

// generationFile matches the files a CA rollover adds (package pki): the
// state file, and each generation's intermediate, new root and bridge.
var generationFile = regexp.MustCompile(`^(` + regexp.QuoteMeta(pki.StateFile) + `|` + regexp.QuoteMeta(pki.GenerationsDir) +
	`/[0-9]{1,6}/(intermediate\.crt|intermediate\.key|root\.crt|root\.key|bridge\.crt))$`)

// readGenerations adds the rollover files of dir, if any, under their
// slash-separated relative names.
func readGenerations(dir string, files map[string][]byte) error {
	state, err := os.ReadFile(filepath.Join(dir, pki.StateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	files[pki.StateFile] = state
	gens := filepath.Join(dir, pki.GenerationsDir)
	return filepath.WalkDir(gens, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(rel)
		if !generationFile.MatchString(name) {
			return nil // not CA material (a leftover of an interrupted rollover)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[name] = b
		return nil
	})
}

// knownFile reports whether a backup may hold a file of this name.
func knownFile(name string) bool {
	return slices.Contains(Files, name) || generationFile.MatchString(name)
}

// isKey reports whether a CA file holds a private key.
func isKey(name string) bool { return strings.HasSuffix(name, ".key") }

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// Seal seals c (its Files) to the recipient key to, stamped with now.
func Seal(c Contents, to *PublicKey, now time.Time) ([]byte, error) {
	root, err := checkCA(c.Files)
	if err != nil {
		return nil, fmt.Errorf("cabackup: seal: %w", err)
	}
	p := payload{Created: now.Unix()}
	sum := sha256.Sum256(root.Raw)
	p.Root = sum[:]
	for _, name := range Files {
		if b, ok := c.Files[name]; ok {
			p.Files = append(p.Files, payloadFile{Name: name, Data: b})
		}
	}
	var extra []string
	for name := range c.Files {
		if !slices.Contains(Files, name) && generationFile.MatchString(name) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		p.Files = append(p.Files, payloadFile{Name: name, Data: c.Files[name]})
	}
	plain, err := encMode.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("cabackup: seal: %w", err)
	}
	enc, sender, err := hpke.NewSender(to.k, kdf, aead, []byte(Info))
	if err != nil {
		return nil, fmt.Errorf("cabackup: seal: %w", err)
	}
	hdr := make([]byte, 0, fixedHeader+len(enc)+4)
	hdr = append(hdr, Magic...)
	hdr = append(hdr, Version)
	hdr = binary.BigEndian.AppendUint16(hdr, KEMID)
	hdr = binary.BigEndian.AppendUint16(hdr, KDFID)
	hdr = binary.BigEndian.AppendUint16(hdr, AEADID)
	hdr = append(hdr, to.id...)
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(enc)))
	hdr = append(hdr, enc...)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(plain)+16))
	ct, err := sender.Seal(hdr, plain)
	if err != nil {
		return nil, fmt.Errorf("cabackup: seal: %w", err)
	}
	if len(ct) != len(plain)+16 {
		return nil, fmt.Errorf("cabackup: seal: ciphertext of %d bytes for %d", len(ct), len(plain))
	}
	return append(hdr, ct...), nil
}

// Header is the clear part of a backup.
type Header struct {
	Version uint8
	KEM     uint16
	KDF     uint16
	AEAD    uint16
	// Recipient is the KeyID of the key the backup is sealed to.
	Recipient string
	enc       []byte
	aad       []byte // every byte before the ciphertext
	ct        []byte
}

// ParseHeader decodes the clear header of a backup and checks its
// structure; it decrypts nothing.
func ParseHeader(data []byte) (Header, error) {
	if len(data) > MaxSize {
		return Header{}, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(data), MaxSize)
	}
	if len(data) < fixedHeader || string(data[:len(Magic)]) != Magic {
		return Header{}, fmt.Errorf("%w: not an Embark CA backup", ErrMalformed)
	}
	h := Header{Version: data[len(Magic)]}
	if h.Version != Version {
		return Header{}, fmt.Errorf("%w: format version %d, this version reads %d", ErrUnsupported, h.Version, Version)
	}
	o := len(Magic) + 1
	h.KEM = binary.BigEndian.Uint16(data[o:])
	h.KDF = binary.BigEndian.Uint16(data[o+2:])
	h.AEAD = binary.BigEndian.Uint16(data[o+4:])
	if h.KEM != KEMID || h.KDF != KDFID || h.AEAD != AEADID {
		return Header{}, fmt.Errorf("%w: KEM %#04x, KDF %#04x, AEAD %#04x; format 1 is %#04x, %#04x, %#04x",
			ErrUnsupported, h.KEM, h.KDF, h.AEAD, KEMID, KDFID, AEADID)
	}
	o += 6
	h.Recipient = hex.EncodeToString(data[o : o+sha256.Size])
	o += sha256.Size
	ne := int(binary.BigEndian.Uint16(data[o:]))
	o += 2
	if len(data) < o+ne+4 {
		return Header{}, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	h.enc = data[o : o+ne]
	o += ne
	nc := int(binary.BigEndian.Uint32(data[o:]))
	o += 4
	if len(data)-o != nc {
		return Header{}, fmt.Errorf("%w: ciphertext of %d bytes, header says %d", ErrMalformed, len(data)-o, nc)
	}
	h.aad = data[:o]
	h.ct = data[o:]
	return h, nil
}

// Open decrypts a backup with the recipient's private key and checks that
// it holds a CA. A backup sealed to another key fails with [ErrWrongKey],
// one that was modified with [ErrOpen] (or [ErrMalformed] /
// [ErrUnsupported] if its header no longer parses).
func Open(data []byte, key *PrivateKey) (Contents, error) {
	h, err := ParseHeader(data)
	if err != nil {
		return Contents{}, err
	}
	if h.Recipient != key.Public().KeyID() {
		return Contents{}, fmt.Errorf("%w: the backup is sealed to key %s, this key is %s", ErrWrongKey, h.Recipient, key.Public().KeyID())
	}
	r, err := hpke.NewRecipient(h.enc, key.k, kdf, aead, []byte(Info))
	if err != nil {
		return Contents{}, fmt.Errorf("%w (%v)", ErrOpen, err)
	}
	plain, err := r.Open(h.aad, h.ct)
	if err != nil {
		return Contents{}, ErrOpen
	}
	var p payload
	if err := decMode.Unmarshal(plain, &p); err != nil {
		return Contents{}, fmt.Errorf("%w: %v", ErrContent, err)
	}
	c := Contents{Created: time.Unix(p.Created, 0).UTC(), Files: map[string][]byte{}}
	for _, f := range p.Files {
		if !knownFile(f.Name) {
			return Contents{}, fmt.Errorf("%w: unexpected file %q", ErrContent, f.Name)
		}
		if _, dup := c.Files[f.Name]; dup {
			return Contents{}, fmt.Errorf("%w: file %q twice", ErrContent, f.Name)
		}
		c.Files[f.Name] = f.Data
	}
	root, err := checkCA(c.Files)
	if err != nil {
		return Contents{}, fmt.Errorf("%w: %w", ErrContent, err)
	}
	c.RootSHA256 = fingerprint(root)
	if hex.EncodeToString(p.Root) != c.RootSHA256 {
		return Contents{}, fmt.Errorf("%w: root fingerprint %x does not match the root certificate", ErrContent, p.Root)
	}
	return c, nil
}

// Restore opens a backup and writes its CA files into caDir (created 0700
// if needed): keys 0600, certificates 0644. It refuses, with [ErrExists],
// a caDir that holds any CA file already, and writes nothing unless the
// backup opens and holds a CA. Afterwards the CA must load (pki.Load); if
// it does not, the files written are removed.
func Restore(data []byte, key *PrivateKey, caDir string) (Contents, error) {
	c, err := Open(data, key)
	if err != nil {
		return Contents{}, err
	}
	var present []string
	for _, name := range append(slices.Clone(Files), pki.ServerCertFile, pki.ServerKeyFile, pki.StateFile, pki.GenerationsDir) {
		if _, err := os.Lstat(filepath.Join(caDir, name)); err == nil {
			present = append(present, name)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return Contents{}, fmt.Errorf("cabackup: restore: %w", err)
		}
	}
	if len(present) > 0 {
		return Contents{}, fmt.Errorf("%w: %s already holds %v; restore into a fresh data directory", ErrExists, caDir, present)
	}
	if err := os.MkdirAll(caDir, 0o700); err != nil {
		return Contents{}, fmt.Errorf("cabackup: restore: %w", err)
	}
	var written []string
	rollback := func() {
		for _, p := range written {
			_ = os.Remove(p)
		}
		_ = os.RemoveAll(filepath.Join(caDir, pki.GenerationsDir))
	}
	names := make([]string, 0, len(c.Files))
	for name := range c.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		perm := os.FileMode(0o644)
		if isKey(name) {
			perm = 0o600
		}
		p := filepath.Join(caDir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			rollback()
			return Contents{}, fmt.Errorf("cabackup: restore: %w", err)
		}
		if err := writeNew(p, c.Files[name], perm); err != nil {
			rollback()
			return Contents{}, err
		}
		written = append(written, p)
	}
	if _, err := pki.Load(caDir); err != nil {
		rollback()
		return Contents{}, fmt.Errorf("cabackup: restore: the restored CA does not load: %w", err)
	}
	return c, nil
}

// checkCA checks that files hold a CA and returns its root.
func checkCA(files map[string][]byte) (*x509.Certificate, error) {
	for _, name := range Files {
		if _, ok := files[name]; !ok && name != pki.RootKeyFile {
			return nil, fmt.Errorf("missing %s", name)
		}
	}
	root, err := parseCert(pki.RootCertFile, files[pki.RootCertFile])
	if err != nil {
		return nil, err
	}
	inter, err := parseCert(pki.IntermediateCertFile, files[pki.IntermediateCertFile])
	if err != nil {
		return nil, err
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%s is not self-signed: %w", pki.RootCertFile, err)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("%s is not signed by %s: %w", pki.IntermediateCertFile, pki.RootCertFile, err)
	}
	if err := checkKey(pki.IntermediateKeyFile, files[pki.IntermediateKeyFile], inter); err != nil {
		return nil, err
	}
	if b, ok := files[pki.RootKeyFile]; ok {
		if err := checkKey(pki.RootKeyFile, b, root); err != nil {
			return nil, err
		}
	}
	return root, nil
}

func parseCert(name string, b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", name)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if !c.BasicConstraintsValid || !c.IsCA {
		return nil, fmt.Errorf("%s is not a CA certificate", name)
	}
	return c, nil
}

func checkKey(name string, b []byte, cert *x509.Certificate) error {
	block, _ := pem.Decode(b)
	if block == nil {
		return fmt.Errorf("%s: no PEM private key", name)
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return fmt.Errorf("%s: PEM block %q is not a private key", name, block.Type)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return fmt.Errorf("%s: key of type %T cannot sign", name, key)
	}
	pub, ok := s.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return fmt.Errorf("%s does not belong to %s", name, cert.Subject.CommonName)
	}
	return nil
}

// writeNew writes data to path, which must not exist, through a synced
// temporary file.
func writeNew(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-cabackup-")
	if err != nil {
		return fmt.Errorf("cabackup: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("cabackup: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("cabackup: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("cabackup: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("cabackup: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%w: %s exists", ErrExists, path)
		}
		return fmt.Errorf("cabackup: %w", err)
	}
	return nil
}
