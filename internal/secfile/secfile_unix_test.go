//go:build unix

package secfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"x0tta6bl4/internal/secfile"
)

// TestReadFIFO checks that a FIFO is refused at once: opening one for reading normally blocks until a
// writer appears, which would hang whoever loads a key from that path.
func TestReadFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for name, read := range map[string]func(string, int64) ([]byte, error){
		"ReadSecret": secfile.ReadSecret,
		"Read":       secfile.Read,
	} {
		done := make(chan error, 1)
		go func() {
			_, err := read(path, 100)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("%s: %v, want a not-a-regular-file error", name, err)
			}
		case <-time.After(10 * time.Second):
			// Unblock the reader so the test binary can finish, then fail.
			if w, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			<-done
			t.Fatalf("%s blocked opening a FIFO", name)
		}
	}
}
