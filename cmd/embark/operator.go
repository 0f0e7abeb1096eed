package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/embark-iot/embark/pkg/admin"
	"github.com/embark-iot/embark/pkg/operator"
)

// ServerCAFile is the file operator add writes the server's roots to.
const ServerCAFile = "server-ca.crt"

func runOperator(ctx context.Context, args []string, out io.Writer) error {
	fs, data := newFlags("operator")
	role := fs.String("role", "", "admin, operator or auditor (add)")
	dir := fs.String("out", ".", "directory for NAME.crt, NAME.key and "+ServerCAFile+" (add)")
	lifetime := fs.Duration("lifetime", operator.DefaultLifetime, "certificate lifetime (add)")
	reason := fs.String("reason", "", "why (remove)")
	asJSON := fs.Bool("json", false, "print JSON (list)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	const use = "operator add NAME --role admin|operator|auditor [--out DIR] [--lifetime D] | list [--json] | remove NAME [--reason R]"
	switch {
	case len(pos) == 2 && pos[0] == "add":
		if *role == "" {
			return fmt.Errorf("%w: operator add NAME --role R: a role is required", errUsage)
		}
		return operatorAdd(ctx, *data, pos[1], *role, *dir, *lifetime, out)
	case len(pos) == 1 && pos[0] == "list":
		return operatorList(ctx, *data, *asJSON, out)
	case len(pos) == 2 && pos[0] == "remove":
		return operatorRemove(ctx, *data, pos[1], *reason, out)
	}
	return fmt.Errorf("%w: %s", errUsage, use)
}

// operatorAdd makes a key pair here, has the server certify its public key
// and writes NAME.key (0600), NAME.crt and the server's roots into dir.
// The operator CA's key never leaves the server host.
func operatorAdd(ctx context.Context, dataDir, name, roleName, dir string, lifetime time.Duration, out io.Writer) error {
	if err := operator.CheckName(name); err != nil {
		return err
	}
	if _, err := operator.ParseRole(roleName); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	certPath, keyPath, caPath := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key"), filepath.Join(dir, ServerCAFile)
	if _, err := os.Stat(certPath); err == nil {
		return fmt.Errorf("%s exists: remove it or choose another --out", certPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	pder, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	// The key is written first (never over an existing file), so that a
	// certificate is never issued for a key that could not be kept.
	if err := writeExclusive(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return fmt.Errorf("operator key: %w", err)
	}
	keep := false
	defer func() {
		if !keep {
			os.Remove(keyPath)
		}
	}()
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	body, err := json.Marshal(admin.OperatorAddRequest{
		Name: name, Role: roleName, Lifetime: lifetime.String(),
		PublicKey: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pder})),
	})
	if err != nil {
		return err
	}
	var res admin.OperatorAddResult
	if err := cl.Do(ctx, http.MethodPost, "/v1/operators", body, &res); err != nil {
		return err
	}
	keep = true
	if err := writeExclusive(certPath, []byte(res.Certificate), 0o644); err != nil {
		return fmt.Errorf("operator certificate: %w", err)
	}
	if err := os.WriteFile(caPath, []byte(res.ServerCA), 0o644); err != nil {
		return fmt.Errorf("server CA: %w", err)
	}
	server := "https://HOST:8443"
	var st struct {
		HTTPS struct {
			Addr string `json:"addr"`
		} `json:"https"`
	}
	if cl.Do(ctx, http.MethodGet, "/v1/status", nil, &st) == nil && st.HTTPS.Addr != "" {
		server = "https://" + st.HTTPS.Addr
	}
	r := res.Operator
	fmt.Fprintf(out, "operator %s (%s) added: certificate %s valid until %s\n", r.Name, r.Role, r.Serial, r.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(out, "  certificate  %s\n  key          %s (keep it secret)\n  server CA    %s\n", certPath, keyPath, caPath)
	fmt.Fprintf(out, "use: embark --server %s --cert %s --key %s --ca %s status\n", server, certPath, keyPath, caPath)
	return nil
}

func operatorList(ctx context.Context, dataDir string, asJSON bool, out io.Writer) error {
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	var list admin.OperatorList
	if err := cl.Do(ctx, http.MethodGet, "/v1/operators", nil, &list); err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSERIAL\tNOT AFTER\tADDED BY")
	for _, r := range list.Operators {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, r.Serial, r.NotAfter.UTC().Format(time.RFC3339), r.AddedBy)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(list.Removed) > 0 {
		fmt.Fprintln(out, "\nremoved (refused):")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tROLE\tSERIAL\tREMOVED\tBY\tREASON")
		for _, r := range list.Removed {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Role, r.Serial, r.Removed.UTC().Format(time.RFC3339), r.RemovedBy, r.Reason)
		}
		return tw.Flush()
	}
	return nil
}

func operatorRemove(ctx context.Context, dataDir, name, reason string, out io.Writer) error {
	if err := operator.CheckName(name); err != nil {
		return err
	}
	cl, done, err := connect(ctx, dataDir)
	if err != nil {
		return err
	}
	defer done()
	path := "/v1/operators/" + url.PathEscape(name)
	if reason != "" {
		path += "?reason=" + url.QueryEscape(reason)
	}
	var rm operator.Removal
	if err := cl.Do(ctx, http.MethodDelete, path, nil, &rm); err != nil {
		return err
	}
	fmt.Fprintf(out, "operator %s (%s) removed: certificate %s refused from now on\n", rm.Name, rm.Role, rm.Serial)
	return nil
}

// writeExclusive writes a new file and fails if one exists.
func writeExclusive(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s exists: remove it or choose another --out", path)
		}
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
