package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/control/store/storetest"
)

func insertNode(t *testing.T, s *store.Store, name string) *store.Node {
	t.Helper()
	n := &store.Node{Name: name, KeyID: "k-" + name, Overlay: "fd74::1", SPIFFEID: "spiffe://m/node/" + name, Groups: []string{"web", "ops"},
		PublicKeyPEM: "pub", Serial: "s-" + name, CertPEM: "c", SVIDPEM: "v", NotBefore: t0, NotAfter: t0.Add(time.Hour),
		CertTTL: time.Hour, EnrolledAt: t0}
	if err := s.InsertNode(context.Background(), n); err != nil {
		t.Fatal(err)
	}
	return n
}

// publish stores a record under a new generation, as the server does when a record is news.
func publish(t *testing.T, s *store.Store, r *store.MeshRecord) bool {
	t.Helper()
	ctx := context.Background()
	var stored bool
	err := s.InTx(ctx, func(tx *store.Tx) error {
		g, err := tx.NextRecordGeneration(ctx)
		if err != nil {
			return err
		}
		r.Generation, r.PublishedExpires, r.PublishedDigest = g, r.Expires, fmt.Sprintf("digest-%d", r.Sequence)
		stored, err = tx.PutRecord(ctx, r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

func TestRecords(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		alpha, beta := insertNode(t, s, "alpha"), insertNode(t, s, "beta")
		if _, err := s.RecordOf(ctx, alpha.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("record of a node that never reported: %v", err)
		}
		if g, err := s.RecordGeneration(ctx); err != nil || g != 0 {
			t.Fatalf("generation of an empty store: %d %v", g, err)
		}
		rec := func(n *store.Node, seq uint64, fill byte) *store.MeshRecord {
			return &store.MeshRecord{NodeID: n.ID, Sequence: seq, Expires: t0.Add(3 * time.Minute), ReceivedAt: t0,
				Certificate: bytes.Repeat([]byte{fill}, 7000), Record: bytes.Repeat([]byte{fill ^ 0xff}, 3400)}
		}
		if !publish(t, s, rec(alpha, 10, 1)) {
			t.Fatal("first record not stored")
		}
		// Never back, never sideways: a lower or equal sequence number is not stored.
		for _, seq := range []uint64{9, 10} {
			if publish(t, s, rec(alpha, seq, 2)) {
				t.Fatalf("sequence %d replaced sequence 10", seq)
			}
		}
		// A newer record that is not news keeps its generation.
		quiet := rec(alpha, 11, 3)
		quiet.Generation, quiet.PublishedExpires, quiet.PublishedDigest = 1, t0.Add(3*time.Minute), "digest-10"
		if ok, err := s.PutRecord(ctx, quiet); err != nil || !ok {
			t.Fatalf("newer record: %v %v", ok, err)
		}
		got, err := s.RecordOf(ctx, alpha.ID)
		if err != nil || got.Sequence != 11 || got.Generation != 1 || !bytes.Equal(got.Certificate, quiet.Certificate) ||
			!bytes.Equal(got.Record, quiet.Record) || got.NodeName != "alpha" || len(got.NodeGroups) != 2 ||
			!got.Expires.Equal(quiet.Expires) || got.PublishedDigest != "digest-10" {
			t.Fatalf("stored record %+v %v", got, err)
		}
		if !publish(t, s, rec(beta, 5, 4)) {
			t.Fatal("beta's record not stored")
		}
		if g, _ := s.RecordGeneration(ctx); g != 4 { // alpha took 1, 2 and 3 (two refused), beta 4
			t.Fatalf("generation %d, want 4", g)
		}
		list := func(after, upTo uint64, now time.Time) []string {
			t.Helper()
			rs, err := s.ListRecords(ctx, after, upTo, now, 0)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range rs {
				names = append(names, fmt.Sprintf("%s@%d", r.NodeName, r.Generation))
			}
			return names
		}
		for _, c := range []struct {
			after, upTo uint64
			now         time.Time
			want        string
		}{
			{0, 4, t0, "[alpha@1 beta@4]"},
			{1, 4, t0, "[beta@4]"},
			{0, 3, t0, "[alpha@1]"}, // a generation not yet announced is not listed
			{4, 4, t0, "[]"},
			{0, 4, t0.Add(3 * time.Minute), "[]"}, // expired
		} {
			if got := fmt.Sprint(list(c.after, c.upTo, c.now)); got != c.want {
				t.Errorf("records in (%d, %d] at %s: %s, want %s", c.after, c.upTo, c.now, got, c.want)
			}
		}
		if rs, err := s.ListRecords(ctx, 0, 4, t0, 1); err != nil || len(rs) != 1 || rs[0].NodeName != "alpha" {
			t.Fatalf("limit 1: %+v %v", rs, err)
		}
		if err := s.MarkNodeRevoked(ctx, beta.ID, t0); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(list(0, 4, t0)); got != "[alpha@1]" {
			t.Fatalf("records after revoking beta: %s", got)
		}
		// Re-enrolling beta's name removes the revoked node's record with the node.
		insertNode(t, s, "beta")
		if _, err := s.RecordOf(ctx, beta.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("revoked node's record after re-enrolment: %v", err)
		}
		if _, err := s.PutRecord(ctx, rec(alpha, math.MaxInt64+1, 5)); err == nil {
			t.Fatal("sequence 2^63 stored")
		}
		if _, err := s.ListRecords(ctx, math.MaxInt64+1, 0, t0, 0); err == nil {
			t.Fatal("listing after generation 2^63")
		}
	})
}

// TestRecordWritersRace: concurrent writers of one node's record leave the highest sequence
// number, whatever order they commit in.
func TestRecordWritersRace(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		n := insertNode(t, s, "alpha")
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := &store.MeshRecord{NodeID: n.ID, Sequence: uint64(100 + i*7%16), Expires: t0.Add(time.Minute), ReceivedAt: t0,
					Certificate: []byte{byte(i)}, Record: []byte{byte(i)}, Generation: 1, PublishedExpires: t0, PublishedDigest: "d"}
				if _, err := s.PutRecord(ctx, r); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		got, err := s.RecordOf(ctx, n.ID)
		if err != nil || got.Sequence != 115 {
			t.Fatalf("after racing writers: %+v %v, want sequence 115", got, err)
		}
	})
}

// TestProofs: destination proofs are kept like records, in their own table with their own
// generations, and a list leaves out the caller's own area.
func TestProofs(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		alpha, beta, gamma := insertNode(t, s, "alpha"), insertNode(t, s, "beta"), insertNode(t, s, "gamma")
		put := func(n *store.Node, seq uint64, area uint32) bool {
			t.Helper()
			var stored bool
			err := s.InTx(ctx, func(tx *store.Tx) error {
				g, err := tx.NextGeneration(ctx, store.Proofs)
				if err != nil {
					return err
				}
				stored, err = tx.PutSigned(ctx, store.Proofs, &store.MeshRecord{NodeID: n.ID, Sequence: seq, Expires: t0.Add(3 * time.Minute),
					ReceivedAt: t0, Certificate: []byte("cert-" + n.Name), Record: []byte{byte(seq)}, Generation: g, Area: area,
					PublishedExpires: t0.Add(3 * time.Minute), PublishedDigest: "d"})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return stored
		}
		if !put(alpha, 1, 1) || !put(beta, 1, 2) || !put(gamma, 1, 2) || put(beta, 1, 3) {
			t.Fatal("proofs not stored as records are (newer only)")
		}
		if g, err := s.Generation(ctx, store.Proofs); err != nil || g != 4 {
			t.Fatalf("proof generation %d %v, want 4", g, err)
		}
		if g, err := s.RecordGeneration(ctx); err != nil || g != 0 {
			t.Fatalf("proofs moved the record generation to %d %v", g, err)
		}
		if _, err := s.RecordOf(ctx, alpha.ID); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a proof read back as a record: %v", err)
		}
		got, err := s.SignedOf(ctx, store.Proofs, beta.ID)
		if err != nil || got.Area != 2 || got.Sequence != 1 || string(got.Certificate) != "cert-beta" {
			t.Fatalf("beta's proof: %+v %v", got, err)
		}
		list := func(notArea uint32) string {
			t.Helper()
			return listByArea(t, s, store.Proofs, store.AreaFilter{Area: notArea}, 4)
		}
		if got := list(2); got != "[alpha/1]" {
			t.Errorf("proofs not of area 2: %s", got)
		}
		if got := list(1); got != "[beta/2 gamma/2]" {
			t.Errorf("proofs not of area 1: %s", got)
		}
		if got := list(0); got != "[alpha/1 beta/2 gamma/2]" {
			t.Errorf("proofs of every area: %s", got)
		}
	})
}

// TestRecordsByArea: records are kept with the area they are signed with, and a list for an area
// holds that area's records only.
func TestRecordsByArea(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for i, c := range []struct {
			name string
			area uint32
		}{{"alpha", 1}, {"beta", 2}, {"gamma", 1}, {"delta", 0}} {
			n := insertNode(t, s, c.name)
			err := s.InTx(ctx, func(tx *store.Tx) error {
				g, err := tx.NextGeneration(ctx, store.Records)
				if err != nil {
					return err
				}
				_, err = tx.PutSigned(ctx, store.Records, &store.MeshRecord{NodeID: n.ID, Sequence: uint64(i + 1), Expires: t0.Add(3 * time.Minute),
					ReceivedAt: t0, Certificate: []byte("cert"), Record: []byte("rec"), Generation: g, Area: c.area,
					PublishedExpires: t0.Add(3 * time.Minute), PublishedDigest: "d"})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []struct {
			f    store.AreaFilter
			want string
		}{
			{store.AreaFilter{Area: 1, Same: true}, "[alpha/1 gamma/1]"},
			{store.AreaFilter{Area: 2, Same: true}, "[beta/2]"},
			{store.AreaFilter{Area: 0, Same: true}, "[delta/0]"},
			{store.AreaFilter{Area: 7, Same: true}, "[]"},
			{store.AreaFilter{}, "[alpha/1 beta/2 gamma/1 delta/0]"},
		} {
			if got := listByArea(t, s, store.Records, c.f, 10); got != c.want {
				t.Errorf("records for %+v: %s, want %s", c.f, got, c.want)
			}
		}
		// The areas published since a generation, each at its latest: what another instance's
		// long polls are woken by.
		for _, c := range []struct {
			after, upTo uint64
			want        string
		}{{0, 4, "[{2 false 2} {1 false 3} {0 false 4}]"}, {2, 4, "[{1 false 3} {0 false 4}]"}, {1, 2, "[{2 false 2}]"}, {4, 9, "[]"}} {
			got, err := s.PublishedAreas(ctx, store.Records, c.after, c.upTo)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != c.want {
				t.Errorf("areas published in (%d, %d]: %v, want %s", c.after, c.upTo, got, c.want)
			}
		}
	})
}

// listByArea lists d's rows published up to generation upTo that f picks, as "name/area".
func listByArea(t *testing.T, s *store.Store, d store.Directory, f store.AreaFilter, upTo uint64) string {
	t.Helper()
	rs, err := s.ListSigned(context.Background(), d, f, 0, upTo, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rs {
		names = append(names, fmt.Sprintf("%s/%d", r.NodeName, r.Area))
	}
	return fmt.Sprint(names)
}

// TestNodeEnrolmentArea: the routing area a node named at enrolment is kept, area 0 included, and a
// node that named none reads as such.
func TestNodeEnrolmentArea(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		for _, c := range []struct {
			name string
			area *uint32
			want string
		}{{"none", nil, "<nil>"}, {"zero", new(uint32), "0"}, {"top", func() *uint32 { a := uint32(math.MaxUint32); return &a }(), "4294967295"}} {
			n := &store.Node{Name: c.name, KeyID: "k-" + c.name, Overlay: "fd74::1", SPIFFEID: "spiffe://m/node/" + c.name, PublicKeyPEM: "pub",
				Serial: "s-" + c.name, CertPEM: "c", SVIDPEM: "v", NotBefore: t0, NotAfter: t0.Add(time.Hour), CertTTL: time.Hour, EnrolledAt: t0,
				EnrolmentArea: c.area}
			if err := s.InsertNode(ctx, n); err != nil {
				t.Fatal(err)
			}
			got, err := s.NodeByName(ctx, c.name)
			if err != nil {
				t.Fatal(err)
			}
			area := "<nil>"
			if got.EnrolmentArea != nil {
				area = fmt.Sprint(*got.EnrolmentArea)
			}
			if area != c.want {
				t.Errorf("%s's enrolment area reads %s, want %s", c.name, area, c.want)
			}
		}
	})
}

// TestNodeRoutingArea: a node read from the store carries the area of its stored record, which
// counts over the one named at enrolment, in every read (by name, by key, listed).
func TestNodeRoutingArea(t *testing.T) {
	storetest.Each(t, func(t *testing.T, s *store.Store) {
		ctx := context.Background()
		five := uint32(5)
		named := &store.Node{Name: "named", KeyID: "k-named", Overlay: "fd74::2", SPIFFEID: "spiffe://m/node/named", PublicKeyPEM: "pub",
			Serial: "s-named", CertPEM: "c", SVIDPEM: "v", NotBefore: t0, NotAfter: t0.Add(time.Hour), CertTTL: time.Hour, EnrolledAt: t0,
			EnrolmentArea: &five}
		if err := s.InsertNode(ctx, named); err != nil {
			t.Fatal(err)
		}
		silent := insertNode(t, s, "silent")
		areas := func() string {
			t.Helper()
			ns, err := s.ListNodes(ctx, 10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range ns {
				byName, err := s.NodeByName(ctx, n.Name)
				if err != nil {
					t.Fatal(err)
				}
				byKey, err := s.LiveNodeByKeyID(ctx, n.KeyID)
				if err != nil {
					t.Fatal(err)
				}
				area, fromRecord, known := n.RoutingArea()
				for _, other := range []*store.Node{byName, byKey} {
					if a, r, k := other.RoutingArea(); a != area || r != fromRecord || k != known {
						t.Fatalf("%s: listed with area %d/%v/%v, read alone with %d/%v/%v", n.Name, area, fromRecord, known, a, r, k)
					}
				}
				got = append(got, fmt.Sprintf("%s:%d/record=%v/known=%v", n.Name, area, fromRecord, known))
			}
			return fmt.Sprint(got)
		}
		if got := areas(); got != "[named:5/record=false/known=true silent:0/record=false/known=false]" {
			t.Fatalf("before any record: %s", got)
		}
		for _, r := range []struct {
			n    *store.Node
			area uint32
		}{{named, 2}, {silent, 0}} {
			publish(t, s, &store.MeshRecord{NodeID: r.n.ID, Sequence: 1, Expires: t0.Add(3 * time.Minute), ReceivedAt: t0,
				Certificate: []byte("cert"), Record: []byte("rec"), Area: r.area})
		}
		if got := areas(); got != "[named:2/record=true/known=true silent:0/record=true/known=true]" {
			t.Fatalf("after each node's record: %s", got)
		}
	})
}
