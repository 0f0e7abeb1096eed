package pki

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/certificates/cas/apiv1"
	"github.com/smallstep/certificates/cas/softcas"
	kmsapi "go.step.sm/crypto/kms/apiv1"
)

// Files of the rollover state in a CA directory.
const (
	// StateFile lists the CA's generations once it has rolled over; a CA
	// directory without it has the one generation Init created.
	StateFile = "ca-state.json"
	// GenerationsDir holds one directory per generation after the first,
	// named by its number.
	GenerationsDir = "generations"
	// BridgeCertFile, in a generation with a new root, is the new
	// intermediate certified by the previous root.
	BridgeCertFile = "bridge.crt"
)

// minIntermediateLife is the shortest life a new intermediate may have:
// a root that ends sooner must be rolled over itself.
const minIntermediateLife = 30 * 24 * time.Hour

// stateVersion is the version of the state file format.
const stateVersion = 1

// stateFile is the content of StateFile.
type stateFile struct {
	Version       int         `json:"version"`
	Intermediates []genRecord `json:"intermediates"`
}

// genRecord is what the state file says about one generation.
type genRecord struct {
	Generation int    `json:"generation"`
	ID         string `json:"id"`
	// Dir holds intermediate.crt and intermediate.key: "." for generation
	// 1, "generations/N" for generation N.
	Dir string `json:"dir"`
	// RootDir holds the root.crt (and root.key) above it: the Dir of the
	// generation that introduced the root.
	RootDir string `json:"root_dir"`
	// Bridge is set when Dir also holds bridge.crt.
	Bridge  bool        `json:"bridge,omitempty"`
	State   IssuerState `json:"state"`
	Created time.Time   `json:"created,omitzero"`
	Retired time.Time   `json:"retired,omitzero"`
}

// genDir is the directory of generation n, relative to the CA directory.
func genDir(n int) string {
	if n == 1 {
		return "."
	}
	return GenerationsDir + "/" + strconv.Itoa(n)
}

// RolloverOptions say what a rollover creates.
type RolloverOptions struct {
	// NewRoot also creates a new root (10 years) above the new
	// intermediate. The new intermediate is then certified twice: by the
	// new root, and by the previous root in a bridge certificate that
	// Embark presents with its own certificates, so that devices which
	// trust only the previous root keep verifying Embark until they have
	// learned the new one (from /crts).
	NewRoot bool
}

// step calls the test seam before a step of Rollover.
func (ca *CA) step(name string) error {
	if ca.fail == nil {
		return nil
	}
	return ca.fail(name)
}

// Rollover introduces a new intermediate, which becomes the active one:
// every certificate issued from now on is issued by it. The intermediate
// that was active becomes "previous": what it issued keeps verifying until
// it is retired ([CA.Retire]), so devices can renew onto the new one at
// their own pace. The new intermediate (ECDSA P-256, 5 years, at most as
// long as its root) is signed by the active root, whose key must be in the
// CA directory (ErrRootKeyOffline otherwise); see [RolloverOptions] for a
// new root.
//
// The new files are written into a fresh directory under generations/,
// synced, and moved into place with one rename; the rollover takes effect
// when the state file is replaced (one more rename). A rollover that stops
// before that (a crash, a full disk) leaves the CA as it was; the unused
// directory it leaves is removed by the next rollover.
func (ca *CA) Rollover(opts RolloverOptions) (Issuer, error) {
	if ca.dir == "" {
		return Issuer{}, fmt.Errorf("pki: rollover: %w", ErrNoCADir)
	}
	ca.rollMu.Lock()
	defer ca.rollMu.Unlock()
	fail := func(err error) (Issuer, error) { return Issuer{}, fmt.Errorf("pki: rollover: %w", err) }

	st := ca.state()
	act := st.active
	now := ca.clock()
	rootKey, err := ca.rootKey(act)
	if err != nil {
		return fail(err)
	}
	n := st.gens[len(st.gens)-1].rec.Generation + 1
	gensDir := filepath.Join(ca.dir, GenerationsDir)
	if err := os.MkdirAll(gensDir, dirPerm); err != nil {
		return fail(err)
	}
	if err := ca.removeUnused(gensDir, st); err != nil {
		return fail(err)
	}

	made, err := ca.makeGeneration(act, rootKey, n, opts, now)
	if err != nil {
		return fail(err)
	}
	tmp, err := os.MkdirTemp(gensDir, ".tmp-")
	if err != nil {
		return fail(err)
	}
	for _, f := range made.files {
		if err := ca.step("write " + f.name); err != nil {
			return fail(err)
		}
		if err := writeNew(filepath.Join(tmp, f.name), f.data, f.perm); err != nil {
			return fail(err)
		}
	}
	if err := syncDir(tmp); err != nil {
		return fail(err)
	}
	if err := ca.step("rename"); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, filepath.Join(ca.dir, filepath.FromSlash(genDir(n)))); err != nil {
		return fail(err)
	}
	if err := syncDir(gensDir); err != nil {
		return fail(err)
	}
	if err := syncDir(ca.dir); err != nil {
		return fail(err)
	}

	g := made.gen
	next := &caState{active: g}
	for _, old := range st.gens {
		if old == act {
			prev := *old
			prev.rec.State = IssuerPrevious
			old = &prev
		}
		next.gens = append(next.gens, old)
	}
	next.gens = append(next.gens, g)
	if err := ca.step("state"); err != nil {
		return fail(err)
	}
	if err := ca.writeState(next); err != nil {
		return fail(err)
	}
	if err := ca.step("commit"); err != nil {
		// Past the state file: the rollover is durable; only this
		// process does not see it until the CA is loaded again.
		return fail(err)
	}
	ca.st.Store(next)
	ca.logger.Info("CA rolled over", "generation", n, "intermediate", g.inter.Subject.CommonName, "id", g.rec.ID,
		"root", g.root.Subject.CommonName, "new_root", opts.NewRoot, "previous", act.rec.ID)
	return g.issuer(), nil
}

// rootKey reads the key of g's root from the CA directory.
func (ca *CA) rootKey(g *generation) (crypto.Signer, error) {
	path := filepath.Join(ca.dir, filepath.FromSlash(g.rec.RootDir), RootKeyFile)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: put the root key back for the rollover (it may be removed again afterwards): %w", path, ErrRootKeyOffline)
	}
	return readKey(path, g.root)
}

// removeUnused removes what an interrupted rollover left in gensDir:
// entries that no generation of st names. They were never in use.
func (ca *CA) removeUnused(gensDir string, st *caState) error {
	entries, err := os.ReadDir(gensDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		rel := GenerationsDir + "/" + e.Name()
		if slices.ContainsFunc(st.gens, func(g *generation) bool { return g.rec.Dir == rel || g.rec.RootDir == rel }) {
			continue
		}
		if err := os.RemoveAll(filepath.Join(gensDir, e.Name())); err != nil {
			return err
		}
		ca.logger.Info("removed what an interrupted rollover left", "path", filepath.Join(gensDir, e.Name()))
	}
	return nil
}

// newGeneration is a generation made in memory with the files to write.
type newGeneration struct {
	gen   *generation
	files []fileSpec
}

type fileSpec struct {
	name string
	data []byte
	perm fs.FileMode
}

// makeGeneration creates generation n's keys and certificates in memory.
func (ca *CA) makeGeneration(act *generation, rootKey crypto.Signer, n int, opts RolloverOptions, now time.Time) (*newGeneration, error) {
	creator, err := softcas.New(context.Background(), apiv1.Options{IsCreator: true})
	if err != nil {
		return nil, err
	}
	p256 := &apiv1.CreateKeyRequest{SignatureAlgorithm: kmsapi.ECDSAWithSHA256}
	rec := genRecord{Generation: n, Dir: genDir(n), RootDir: act.rec.RootDir, State: IssuerActive, Created: now.UTC().Truncate(time.Second)}
	out := &newGeneration{}

	parent := &apiv1.CreateCertificateAuthorityResponse{Certificate: act.root, Signer: rootKey}
	if opts.NewRoot {
		serial, err := newSerial()
		if err != nil {
			return nil, err
		}
		name := numbered(act.root.Subject.CommonName, n)
		parent, err = creator.CreateCertificateAuthority(&apiv1.CreateCertificateAuthorityRequest{
			Name: name,
			Type: apiv1.RootCA,
			Template: &x509.Certificate{
				SerialNumber:          serial,
				Subject:               pkix.Name{CommonName: name, Organization: act.root.Subject.Organization},
				NotBefore:             now.Add(-backdate),
				NotAfter:              now.Add(RootLifetime),
				KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
				BasicConstraintsValid: true,
				IsCA:                  true,
				MaxPathLen:            1,
			},
			Lifetime:  RootLifetime,
			Backdate:  backdate,
			CreateKey: p256,
		})
		if err != nil {
			return nil, fmt.Errorf("create root: %w", err)
		}
		key, err := marshalKey(parent.PrivateKey)
		if err != nil {
			return nil, fmt.Errorf("root key: %w", err)
		}
		out.files = append(out.files, fileSpec{RootKeyFile, key, keyPerm}, fileSpec{RootCertFile, pemCert(parent.Certificate), certPerm})
		rec.RootDir = rec.Dir
	}

	notAfter := now.Add(IntermediateLifetime)
	if root := parent.Certificate; notAfter.After(root.NotAfter) {
		notAfter = root.NotAfter
	}
	if notAfter.Sub(now) < minIntermediateLife {
		return nil, fmt.Errorf("the root %q ends at %s, too soon for a new intermediate: roll over with a new root: %w",
			parent.Certificate.Subject.CommonName, parent.Certificate.NotAfter.UTC().Format(time.RFC3339), ErrLifetime)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	name := numbered(act.inter.Subject.CommonName, n)
	inter, err := creator.CreateCertificateAuthority(&apiv1.CreateCertificateAuthorityRequest{
		Name: name,
		Type: apiv1.IntermediateCA,
		Template: &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: name, Organization: act.inter.Subject.Organization},
			NotBefore:             now.Add(-backdate),
			NotAfter:              notAfter,
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            0,
			MaxPathLenZero:        true,
		},
		Lifetime:  notAfter.Sub(now),
		Backdate:  backdate,
		Parent:    parent,
		CreateKey: p256,
	})
	if err != nil {
		return nil, fmt.Errorf("create intermediate: %w", err)
	}
	key, err := marshalKey(inter.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("intermediate key: %w", err)
	}
	signer, ok := inter.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("intermediate key of type %T cannot sign", inter.PrivateKey)
	}
	// Key first: a directory with a certificate but no key is never
	// complete, whatever order a crash leaves.
	out.files = append(out.files, fileSpec{IntermediateKeyFile, key, keyPerm}, fileSpec{IntermediateCertFile, pemCert(inter.Certificate), certPerm})
	rec.ID = keyIDOf(inter.Certificate)

	g := &generation{inter: inter.Certificate, root: parent.Certificate}
	g.chain = []*x509.Certificate{g.inter, g.root}
	if opts.NewRoot {
		g.bridge, err = makeBridge(inter.Certificate, act.root, rootKey, now)
		if err != nil {
			return nil, fmt.Errorf("bridge certificate: %w", err)
		}
		out.files = append(out.files, fileSpec{BridgeCertFile, pemCert(g.bridge), certPerm})
		rec.Bridge = true
	}
	g.rec = rec
	g.svc, err = softcas.New(context.Background(), apiv1.Options{CertificateChain: g.chain, Signer: signer})
	if err != nil {
		return nil, err
	}
	out.gen = g
	return out, nil
}

// makeBridge certifies inter's key and name again under oldRoot: the same
// subject and key identifier, so that what inter signs chains to either
// root.
func makeBridge(inter, oldRoot *x509.Certificate, oldRootKey crypto.Signer, now time.Time) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := inter.NotAfter
	if notAfter.After(oldRoot.NotAfter) {
		notAfter = oldRoot.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            inter.RawSubject,
		SubjectKeyId:          inter.SubjectKeyId,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}, oldRoot, inter.PublicKey, oldRootKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// numbered returns a CA name for generation n: the name without a
// generation number it may end with, then n.
func numbered(name string, n int) string {
	if i := strings.LastIndexByte(name, ' '); i > 0 {
		if _, err := strconv.Atoi(name[i+1:]); err == nil {
			name = name[:i]
		}
	}
	return name + " " + strconv.Itoa(n)
}

// Retire retires a previous intermediate: what it issued no longer
// verifies ([CA.VerifyLDevID] fails with ErrRetired), its CRL is no longer
// published, and its key is no longer loaded (the key file stays; it may
// be deleted). The CA cannot tell whether live certificates still chain to
// it: the caller checks its registry first. id is the intermediate's ID or
// a unique prefix of it (see [CA.Issuer]). The active intermediate cannot
// be retired (ErrActiveIssuer); retiring a retired one changes nothing.
func (ca *CA) Retire(id string) (Issuer, error) {
	if ca.dir == "" {
		return Issuer{}, fmt.Errorf("pki: retire: %w", ErrNoCADir)
	}
	ca.rollMu.Lock()
	defer ca.rollMu.Unlock()
	st := ca.state()
	g, err := st.byID(id)
	if err != nil {
		return Issuer{}, fmt.Errorf("pki: retire: %w", err)
	}
	switch {
	case g == st.active:
		return Issuer{}, fmt.Errorf("pki: retire %s: roll over first: %w", g.rec.ID, ErrActiveIssuer)
	case g.rec.State == IssuerRetired:
		return g.issuer(), nil
	}
	retired := *g
	retired.rec.State, retired.rec.Retired = IssuerRetired, ca.clock().UTC().Truncate(time.Second)
	retired.svc = nil
	next := &caState{active: st.active}
	for _, old := range st.gens {
		if old == g {
			old = &retired
		}
		next.gens = append(next.gens, old)
	}
	if err := ca.writeState(next); err != nil {
		return Issuer{}, fmt.Errorf("pki: retire: %w", err)
	}
	ca.st.Store(next)
	ca.logger.Info("intermediate retired", "generation", retired.rec.Generation, "id", retired.rec.ID,
		"intermediate", retired.inter.Subject.CommonName)
	return retired.issuer(), nil
}

// writeState atomically replaces the state file with st.
func (ca *CA) writeState(st *caState) error {
	sf := stateFile{Version: stateVersion}
	for _, g := range st.gens {
		sf.Intermediates = append(sf.Intermediates, g.rec)
	}
	data, err := json.MarshalIndent(sf, "", "  ")
	if err != nil {
		return err
	}
	if err := replaceFile(filepath.Join(ca.dir, StateFile), append(data, '\n'), certPerm); err != nil {
		return err
	}
	return syncDir(ca.dir)
}

// writeNew creates path with data and perm, synced; it fails if path
// exists.
func writeNew(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// loadState loads a CA directory that has a state file.
func loadState(dir string, cfg *config) (*CA, error) {
	fail := func(err error) (*CA, error) { return nil, fmt.Errorf("pki: load %s: %w", dir, err) }
	data, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return fail(err)
	}
	var sf stateFile
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&sf); err != nil {
		return fail(fmt.Errorf("%s: %w: %w", StateFile, ErrState, err))
	}
	if sf.Version != stateVersion || len(sf.Intermediates) == 0 {
		return fail(fmt.Errorf("%s: version %d with %d intermediates: %w", StateFile, sf.Version, len(sf.Intermediates), ErrState))
	}
	st := &caState{}
	roots := map[string]*x509.Certificate{} // by RootDir
	for i, rec := range sf.Intermediates {
		if err := checkRecord(rec, i, sf.Intermediates); err != nil {
			return fail(err)
		}
		g, err := loadGeneration(dir, rec, roots)
		if err != nil {
			return fail(err)
		}
		if rec.State == IssuerActive {
			if st.active != nil {
				return fail(fmt.Errorf("%s: generations %d and %d are both active: %w", StateFile, st.active.rec.Generation, rec.Generation, ErrState))
			}
			st.active = g
		}
		st.gens = append(st.gens, g)
	}
	if st.active == nil {
		return fail(fmt.Errorf("%s: no active intermediate: %w", StateFile, ErrState))
	}
	act := st.active
	now := cfg.clock()
	for _, c := range []*x509.Certificate{act.inter, act.root} {
		if err := checkValidAt(c, now); err != nil {
			return fail(err)
		}
	}
	rootKey := filepath.Join(dir, filepath.FromSlash(act.rec.RootDir), RootKeyFile)
	if _, err := os.Stat(rootKey); err == nil {
		if _, err := readKey(rootKey, act.root); err != nil {
			return fail(err)
		}
	} else if errors.Is(err, fs.ErrNotExist) {
		cfg.logger.Info("root key not present, root kept offline", "dir", dir)
	} else {
		return fail(err)
	}
	cfg.logger.Info("CA loaded", "dir", dir, "generations", len(st.gens),
		"root", act.root.Subject.CommonName, "root_sha256", fingerprint(act.root),
		"intermediate", act.inter.Subject.CommonName, "intermediate_id", act.rec.ID, "intermediate_not_after", act.inter.NotAfter)
	return newCAFrom(st, dir, cfg), nil
}

// checkRecord checks record i of the state file against the layout.
func checkRecord(rec genRecord, i int, all []genRecord) error {
	bad := func(what string) error {
		return fmt.Errorf("%s: intermediate %d: %s: %w", StateFile, i, what, ErrState)
	}
	switch {
	case rec.Generation != i+1:
		return bad(fmt.Sprintf("generation %d, want %d", rec.Generation, i+1))
	case rec.Dir != genDir(rec.Generation):
		return bad(fmt.Sprintf("dir %q, want %q", rec.Dir, genDir(rec.Generation)))
	case rec.State != IssuerActive && rec.State != IssuerPrevious && rec.State != IssuerRetired:
		return bad(fmt.Sprintf("state %q", rec.State))
	case rec.ID == "":
		return bad("no id")
	case rec.Bridge && rec.RootDir != rec.Dir:
		return bad("a bridge without a new root")
	}
	if !slices.ContainsFunc(all[:i+1], func(r genRecord) bool { return r.Dir == rec.RootDir }) {
		return bad(fmt.Sprintf("root_dir %q is no generation up to this one", rec.RootDir))
	}
	return nil
}

// loadGeneration reads one generation's certificates (and, unless it is
// retired, its key) and checks them.
func loadGeneration(dir string, rec genRecord, roots map[string]*x509.Certificate) (*generation, error) {
	gdir := filepath.Join(dir, filepath.FromSlash(rec.Dir))
	inter, err := readCertificate(filepath.Join(gdir, IntermediateCertFile))
	if err != nil {
		return nil, err
	}
	root, ok := roots[rec.RootDir]
	if !ok {
		path := filepath.Join(dir, filepath.FromSlash(rec.RootDir), RootCertFile)
		if root, err = readCertificate(path); err != nil {
			return nil, err
		}
		if !root.BasicConstraintsValid || !root.IsCA {
			return nil, fmt.Errorf("%s is not a CA certificate: %w", path, ErrChainMismatch)
		}
		if err := root.CheckSignatureFrom(root); err != nil {
			return nil, fmt.Errorf("%s is not self-signed: %w: %w", path, ErrChainMismatch, err)
		}
		roots[rec.RootDir] = root
	}
	if !inter.BasicConstraintsValid || !inter.IsCA {
		return nil, fmt.Errorf("generation %d: intermediate is not a CA certificate: %w", rec.Generation, ErrChainMismatch)
	}
	if err := inter.CheckSignatureFrom(root); err != nil {
		return nil, fmt.Errorf("generation %d: intermediate is not signed by %s: %w: %w", rec.Generation, root.Subject, ErrChainMismatch, err)
	}
	if keyIDOf(inter) != rec.ID {
		return nil, fmt.Errorf("generation %d: intermediate key id %s, the state file says %s: %w", rec.Generation, keyIDOf(inter), rec.ID, ErrState)
	}
	g := &generation{rec: rec, inter: inter, root: root, chain: []*x509.Certificate{inter, root}}
	if rec.Bridge {
		b, err := readCertificate(filepath.Join(gdir, BridgeCertFile))
		if err != nil {
			return nil, err
		}
		if err := checkBridge(b, inter, root, roots); err != nil {
			return nil, fmt.Errorf("generation %d: %w", rec.Generation, err)
		}
		g.bridge = b
	}
	if rec.State == IssuerRetired {
		return g, nil
	}
	signer, err := readKey(filepath.Join(gdir, IntermediateKeyFile), inter)
	if err != nil {
		return nil, err
	}
	g.svc, err = softcas.New(context.Background(), apiv1.Options{CertificateChain: g.chain, Signer: signer})
	if err != nil {
		return nil, err
	}
	return g, nil
}

// checkBridge checks that b certifies inter's name and key under one of
// the roots loaded before inter's own.
func checkBridge(b, inter, root *x509.Certificate, roots map[string]*x509.Certificate) error {
	pub, ok := b.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(inter.PublicKey) || string(b.RawSubject) != string(inter.RawSubject) || !b.BasicConstraintsValid || !b.IsCA {
		return fmt.Errorf("bridge certificate does not certify the intermediate as a CA: %w", ErrChainMismatch)
	}
	for _, r := range roots {
		if r != root && b.CheckSignatureFrom(r) == nil {
			return nil
		}
	}
	return fmt.Errorf("bridge certificate is not signed by an earlier root: %w", ErrChainMismatch)
}
