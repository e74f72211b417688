package store_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

func TestPolicies(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		if _, err := s.LatestPolicy(ctx); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("no policy yet: %v, want ErrNotFound", err)
		}
		for i, actor := range nasty {
			p := &store.Policy{Version: uint64(i + 1), IssuedAt: t0.Add(time.Duration(i) * time.Second), IssuedBy: actor,
				Signed: []byte{0, 1, 2, byte(i), 0xff}, Source: `{"grants": [], "note": "` + actor + `"}`}
			if err := s.InsertPolicy(ctx, p); err != nil {
				t.Fatalf("insert %d: %v", p.Version, err)
			}
			got, err := s.LatestPolicy(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != p.Version || !got.IssuedAt.Equal(p.IssuedAt) || got.IssuedBy != actor ||
				!bytes.Equal(got.Signed, p.Signed) || got.Source != p.Source {
				t.Fatalf("round trip: got %+v, want %+v", got, p)
			}
		}
		if err := s.InsertPolicy(ctx, &store.Policy{Version: 2, IssuedAt: t0, Signed: []byte{1}}); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a version stored twice: %v, want ErrConflict", err)
		}
		if err := s.InsertPolicy(ctx, &store.Policy{Version: 0, IssuedAt: t0}); err == nil {
			t.Fatal("version 0 stored")
		}
		if err := s.InsertPolicy(ctx, &store.Policy{Version: 1 << 63, IssuedAt: t0}); err == nil {
			t.Fatal("version 2^63 stored")
		}
		// A failed transaction stores nothing.
		err := s.InTx(ctx, func(tx *store.Tx) error {
			if err := tx.InsertPolicy(ctx, &store.Policy{Version: 100, IssuedAt: t0, Signed: []byte{1}}); err != nil {
				return err
			}
			return errors.New("abort")
		})
		if err == nil {
			t.Fatal("aborted transaction committed")
		}
		if got, err := s.LatestPolicy(ctx); err != nil || got.Version != uint64(len(nasty)) {
			t.Fatalf("after an aborted insert: %+v, %v", got, err)
		}
	})
}

func TestPoliciesPruned(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		const n = store.KeptPolicies + 7
		for v := uint64(1); v <= n; v++ {
			if err := s.InsertPolicy(ctx, &store.Policy{Version: v, IssuedAt: t0, IssuedBy: "x", Signed: []byte{byte(v)}, Source: "{}"}); err != nil {
				t.Fatal(err)
			}
		}
		if c, err := s.CountPolicies(ctx); err != nil || c != store.KeptPolicies {
			t.Fatalf("%d versions kept, %v; want %d", c, err, store.KeptPolicies)
		}
		if got, err := s.LatestPolicy(ctx); err != nil || got.Version != n {
			t.Fatalf("latest after pruning: %+v, %v", got, err)
		}
	})
}
