package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/embark-iot/embark/pkg/store"
)

func testRecords(t *testing.T, open Opener) {
	ctx := context.Background()
	t.Run("fail/not-found", func(t *testing.T) {
		s := open(t)
		err := s.View(ctx, func(r store.Reader) error {
			_, err := r.Record("vuln", "missing")
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Record of a missing key: %v, want ErrNotFound", err)
		}
		// An unknown kind is empty, not an error.
		n := 0
		if err := s.View(ctx, func(r store.Reader) error {
			return r.Records("nothing-here", "", func(string, []byte) (bool, error) { n++; return true, nil })
		}); err != nil || n != 0 {
			t.Fatalf("Records of an unknown kind: %d, %v", n, err)
		}
	})
	t.Run("ok/put-get-list-delete", func(t *testing.T) {
		s := open(t)
		if err := s.Update(ctx, func(tx store.Tx) error {
			for i := 5; i >= 1; i-- {
				if err := tx.PutRecord("vuln", fmt.Sprintf("k%d", i), []byte{byte(i)}); err != nil {
					return err
				}
			}
			return tx.PutRecord("other", "k1", []byte("x"))
		}); err != nil {
			t.Fatal(err)
		}
		var keys []string
		if err := s.View(ctx, func(r store.Reader) error {
			return r.Records("vuln", "k2", func(k string, v []byte) (bool, error) {
				keys = append(keys, k)
				return len(keys) < 2, nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(keys) != "[k3 k4]" {
			t.Fatalf("Records after k2, stop after 2 = %v, want [k3 k4]", keys)
		}
		var got []byte
		if err := s.View(ctx, func(r store.Reader) error {
			var err error
			got, err = r.Record("vuln", "k4")
			return err
		}); err != nil || !bytes.Equal(got, []byte{4}) {
			t.Fatalf("Record = %v, %v", got, err)
		}
		got[0] = 99 // a copy: the store is unchanged
		if err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.DeleteRecord("vuln", "k4"); err != nil {
				return err
			}
			return tx.DeleteRecord("vuln", "never-there")
		}); err != nil {
			t.Fatal(err)
		}
		err := s.View(ctx, func(r store.Reader) error {
			_, err := r.Record("vuln", "k4")
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted record: %v", err)
		}
	})
	t.Run("fail/rolled-back", func(t *testing.T) {
		s := open(t)
		boom := errors.New("boom")
		if err := s.Update(ctx, func(tx store.Tx) error {
			if err := tx.PutRecord("vuln", "k", []byte("v")); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("Update: %v", err)
		}
		err := s.View(ctx, func(r store.Reader) error {
			_, err := r.Record("vuln", "k")
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record written by a failed Update: %v", err)
		}
	})
	t.Run("fail/invalid", func(t *testing.T) {
		s := open(t)
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutRecord("", "k", nil) }); err == nil {
			t.Fatal("empty kind accepted")
		}
		if err := s.Update(ctx, func(tx store.Tx) error { return tx.PutRecord("vuln", "", nil) }); err == nil {
			t.Fatal("empty key accepted")
		}
	})
}
