package admin

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/embark-iot/embark/pkg/audit"
	"github.com/embark-iot/embark/pkg/audit/auditlog"
	"github.com/embark-iot/embark/pkg/hybridsig"
	"github.com/embark-iot/embark/pkg/store"
	"github.com/embark-iot/embark/pkg/store/bolt"
)

func TestAuditBundle(t *testing.T) {
	ctx := context.Background()
	st, err := bolt.Open(filepath.Join(t.TempDir(), "registry.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 0; i < 30; i++ {
		if err := st.Update(ctx, func(tx store.Tx) error {
			_, err := tx.AppendAudit(audit.Entry{Time: now, Actor: "system", Action: "test", Outcome: "ok"})
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	key, err := hybridsig.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := auditlog.NewCheckpointer(st, key, auditlog.WithEvery(10), auditlog.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	h := Handler(Backend{Store: st, Clock: func() time.Time { return now }})

	// Over a unix socket, as the CLI talks to a running server.
	dir, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	defer srv.Close()

	for name, cl := range map[string]*Client{"in-process": InProcess(h), "socket": DialSocket(sock)} {
		t.Run("ok/"+name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := cl.AuditBundle(ctx, &buf); err != nil {
				t.Fatal(err)
			}
			rep, err := audit.VerifyBundle(&buf, key.Public())
			if err != nil || rep.Entries != 30 || rep.Checkpoints != 3 || !rep.Created.Equal(now) {
				t.Fatalf("bundle: %+v, %v", rep, err)
			}
		})
	}

	// A failing export answers an error before any byte of a bundle.
	st.Close()
	for name, cl := range map[string]*Client{"in-process": InProcess(h), "socket": DialSocket(sock)} {
		t.Run("fail/closed store/"+name, func(t *testing.T) {
			var buf bytes.Buffer
			err := cl.AuditBundle(ctx, &buf)
			var ae *APIError
			if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError || buf.Len() != 0 {
				t.Fatalf("err = %v, %d bytes written", err, buf.Len())
			}
		})
	}
}
