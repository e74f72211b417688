package session

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestIndexTable(t *testing.T) {
	tab := NewIndexTable[string](100, nil)
	seen := map[uint32]bool{}
	for i := range 100 {
		idx, err := tab.Allocate("v")
		if err != nil {
			t.Fatalf("allocate %d: %v", i, err)
		}
		if idx == 0 || seen[idx] {
			t.Fatalf("index %#x zero or duplicate", idx)
		}
		seen[idx] = true
	}
	if _, err := tab.Allocate("w"); !errors.Is(err, ErrTableFull) {
		t.Fatalf("full table: %v", err)
	}
	var some uint32
	for idx := range seen {
		some = idx
		break
	}
	if v, ok := tab.Lookup(some); !ok || v != "v" {
		t.Fatal("lookup failed")
	}
	if tab.Release(some, "other") {
		t.Fatal("released an index mapped to another value")
	}
	if !tab.Release(some, "v") || tab.Release(some, "v") {
		t.Fatal("release semantics")
	}
	if _, ok := tab.Lookup(some); ok || tab.Len() != 99 {
		t.Fatal("released index still present")
	}
	if _, err := tab.Allocate("w"); err != nil {
		t.Fatalf("allocate after release: %v", err)
	}
}

func TestIndexTableCollisionsAndReader(t *testing.T) {
	// A reader that yields 0 (reserved), then index 5 twice, then 6.
	r := bytes.NewReader([]byte{0, 0, 0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 6, 0, 0, 0})
	tab := NewIndexTable[int](10, r)
	if idx, err := tab.Allocate(1); err != nil || idx != 5 {
		t.Fatalf("first: %d %v", idx, err)
	}
	if idx, err := tab.Allocate(2); err != nil || idx != 6 {
		t.Fatalf("collision not skipped: %d %v", idx, err)
	}
	if _, err := tab.Allocate(3); !errors.Is(err, io.EOF) {
		t.Fatalf("reader error not wrapped: %v", err)
	}
	stuck := NewIndexTable[int](10, bytes.NewReader(bytes.Repeat([]byte{5, 0, 0, 0}, 100)))
	if _, err := stuck.Allocate(1); err != nil {
		t.Fatal(err)
	}
	if _, err := stuck.Allocate(2); !errors.Is(err, errNoFreeIndex) {
		t.Fatalf("stuck reader: %v", err)
	}
}

// TestIndexTableReplace: a reserved index passes to its new owner only from the value it holds.
func TestIndexTableReplace(t *testing.T) {
	tab := NewIndexTable[string](4, nil)
	idx, err := tab.Allocate("")
	if err != nil {
		t.Fatal(err)
	}
	if tab.Replace(idx, "other", "x") || tab.Replace(idx+1, "", "x") {
		t.Fatal("replaced from a value the index does not hold")
	}
	if !tab.Replace(idx, "", "x") {
		t.Fatal("reserved index not replaced")
	}
	if v, ok := tab.Lookup(idx); !ok || v != "x" || tab.Len() != 1 {
		t.Fatalf("after Replace: %q %v, %d entries", v, ok, tab.Len())
	}
}
