package node

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// TestMemoryHeapProfile: over the admin socket, "memory" gives the runtime's figures and
// "heap_profile" adds a gzipped pprof heap profile.
func TestMemoryHeapProfile(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "admin.sock")
	s, err := (&Node{}).serveAdmin(socket)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	call := func(op string) MemoryStatus {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var m MemoryStatus
		if err := AdminCall(ctx, socket, AdminRequest{Op: op}, &m); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
		return m
	}
	m := call("memory")
	if m.HeapProfile != nil || m.HeapInuse == 0 || m.Sys < m.HeapSys || m.Goroutines == 0 || m.GOGC == 0 {
		t.Errorf("memory: %+v", m)
	}
	m = call("heap_profile")
	z, err := gzip.NewReader(bytes.NewReader(m.HeapProfile))
	if err != nil {
		t.Fatalf("heap profile is not gzipped: %v", err)
	}
	raw, err := io.ReadAll(z)
	if err != nil || len(raw) == 0 {
		t.Fatalf("heap profile: %d bytes, %v", len(raw), err)
	}
	if !bytes.Contains(raw, []byte("inuse_space")) {
		t.Error("heap profile has no inuse_space samples")
	}
}
