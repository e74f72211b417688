package secfile_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"x0tta6bl4/internal/secfile"
)

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() {
		t.Fatalf("%s is %v, not a regular file", path, fi.Mode())
	}
	return fi.Mode().Perm()
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// onlyFiles fails if dir holds anything but names, e.g. a leftover temporary file.
func onlyFiles(t *testing.T, dir string, names ...string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if strings.Join(got, ",") != strings.Join(names, ",") {
		t.Fatalf("%s holds %q, want %q", dir, got, names)
	}
}

func TestWrite(t *testing.T) {
	for _, perm := range []fs.FileMode{0o600, 0o400, 0o640, 0o644} {
		t.Run(perm.String(), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			data := []byte("secret\n")
			if err := secfile.Write(path, data, perm, false); err != nil {
				t.Fatal(err)
			}
			if got := readFile(t, path); !bytes.Equal(got, data) {
				t.Fatalf("content %q, want %q", got, data)
			}
			if got := mode(t, path); got != perm {
				t.Fatalf("mode %v, want %v", got, perm)
			}
			onlyFiles(t, dir, "f")
		})
	}
}

func TestWriteEmpty(t *testing.T) {
	path := filepath.Join(t.TempDir(), "empty")
	if err := secfile.Write(path, nil, 0o600, false); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); len(got) != 0 {
		t.Fatalf("content %q", got)
	}
}

func TestWriteNoOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := secfile.Write(path, []byte("first"), 0o600, false); err != nil {
		t.Fatal(err)
	}
	err := secfile.Write(path, []byte("second"), 0o644, false)
	if !errors.Is(err, secfile.ErrExists) {
		t.Fatalf("second write: %v, want ErrExists", err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Fatalf("error %q does not name the file", err)
	}
	if got := readFile(t, path); string(got) != "first" {
		t.Fatalf("existing file changed to %q", got)
	}
	if got := mode(t, path); got != 0o600 {
		t.Fatalf("existing file's mode changed to %v", got)
	}
	onlyFiles(t, dir, "key") // the temporary file is gone after the failure too

	// Any existing directory entry counts, not just regular files.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := secfile.Write(sub, []byte("x"), 0o600, false); !errors.Is(err, secfile.ErrExists) {
		t.Fatalf("write over a directory: %v, want ErrExists", err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	if err := secfile.Write(dangling, []byte("x"), 0o600, false); !errors.Is(err, secfile.ErrExists) {
		t.Fatalf("write over a dangling symlink: %v, want ErrExists", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("write followed a dangling symlink")
	}
}

func TestWriteOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	if err := secfile.Write(path, []byte("first, longer content"), 0o644, false); err != nil {
		t.Fatal(err)
	}
	if err := secfile.Write(path, []byte("second"), 0o600, true); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); string(got) != "second" {
		t.Fatalf("content %q", got)
	}
	if got := mode(t, path); got != 0o600 {
		t.Fatalf("mode %v, want 0600", got)
	}
	// Overwrite also creates.
	other := filepath.Join(dir, "other")
	if err := secfile.Write(other, []byte("x"), 0o600, true); err != nil {
		t.Fatal(err)
	}
	onlyFiles(t, dir, "key", "other")
}

func TestWriteErrors(t *testing.T) {
	dir := t.TempDir()
	err := secfile.Write(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600, false)
	if err == nil || errors.Is(err, secfile.ErrExists) {
		t.Fatalf("write into a missing directory: %v", err)
	}
	onlyFiles(t, dir)
}

func TestWriteConcurrentNoOverwrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = secfile.Write(path, []byte{byte('a' + i)}, 0o600, false)
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("writers %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, secfile.ErrExists):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	if got := readFile(t, path); !bytes.Equal(got, []byte{byte('a' + winner)}) {
		t.Fatalf("content %q, but writer %d won", got, winner)
	}
	onlyFiles(t, dir, "key")
}

func TestReadSecretModes(t *testing.T) {
	for _, perm := range []fs.FileMode{0o600, 0o400, 0o700, 0o640, 0o644, 0o604, 0o620, 0o602, 0o660, 0o610, 0o601, 0o666, 0o777} {
		t.Run(perm.String(), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "key")
			if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, perm); err != nil {
				t.Fatal(err)
			}
			got, err := secfile.ReadSecret(path, 100)
			if perm&0o077 == 0 {
				if err != nil || string(got) != "data" {
					t.Fatalf("mode %v: %q, %v", perm, got, err)
				}
				return
			}
			if err == nil || got != nil {
				t.Fatalf("mode %v accepted", perm)
			}
			if msg := err.Error(); !strings.Contains(msg, "chmod 600 "+path) || !strings.Contains(msg, "refusing") {
				t.Fatalf("error %q should refuse and suggest chmod 600 %s", msg, path)
			}
			// Public files are readable whatever their mode.
			if got, err := secfile.Read(path, 100); err != nil || string(got) != "data" {
				t.Fatalf("Read of mode %v: %q, %v", perm, got, err)
			}
		})
	}
}

func TestReadSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	data := bytes.Repeat([]byte{'x'}, 100)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for name, read := range map[string]func(string, int64) ([]byte, error){
		"ReadSecret": secfile.ReadSecret,
		"Read":       secfile.Read,
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := read(path, 100); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("at the limit: %d bytes, %v", len(got), err)
			}
			if got, err := read(path, 1000); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("under the limit: %d bytes, %v", len(got), err)
			}
			got, err := read(path, 99)
			if err == nil || got != nil {
				t.Fatalf("over the limit: %d bytes, %v", len(got), err)
			}
			if !strings.Contains(err.Error(), "99") {
				t.Fatalf("error %q does not state the limit", err)
			}
			if _, err := read(path, 0); err == nil {
				t.Fatal("limit 0 accepted a non-empty file")
			}
		})
	}
}

func TestReadNonRegular(t *testing.T) {
	dir := t.TempDir()
	for name, read := range map[string]func(string, int64) ([]byte, error){
		"ReadSecret": secfile.ReadSecret,
		"Read":       secfile.Read,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := read(dir, 1<<20); err == nil || !strings.Contains(err.Error(), "not a regular file") {
				t.Fatalf("directory: %v", err)
			}
			if _, err := os.Stat(os.DevNull); err == nil {
				if _, err := read(os.DevNull, 1<<20); err == nil || !strings.Contains(err.Error(), "not a regular file") {
					t.Fatalf("%s: %v", os.DevNull, err)
				}
			}
			if _, err := read(filepath.Join(dir, "missing"), 10); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("missing file: %v, want ErrNotExist", err)
			}
		})
	}
}

func TestReadFollowsSymlinkToSecret(t *testing.T) {
	// Symlinks are resolved; the mode checked is the target's.
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if got, err := secfile.ReadSecret(link, 10); err != nil || string(got) != "data" {
		t.Fatalf("%q, %v", got, err)
	}
	if err := os.Chmod(target, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := secfile.ReadSecret(link, 10); err == nil {
		t.Fatal("symlink to a world-readable file accepted")
	}
}

func TestWriteThenReadSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	data := bytes.Repeat([]byte("0123456789abcdef"), 1024)
	if err := secfile.Write(path, data, 0o600, false); err != nil {
		t.Fatal(err)
	}
	got, err := secfile.ReadSecret(path, int64(len(data)))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("%d bytes, %v", len(got), err)
	}
	// A file written with a public mode cannot be read back as a secret.
	pub := path + ".pub"
	if err := secfile.Write(pub, data, 0o644, false); err != nil {
		t.Fatal(err)
	}
	if _, err := secfile.ReadSecret(pub, int64(len(data))); err == nil {
		t.Fatal("0644 file read as a secret")
	}
}
