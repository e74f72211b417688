// Package secfile reads and writes small files that hold secrets or signed state.
//
// Writes are atomic (temporary file, fsync, rename or link, fsync of the directory), so a crash never
// leaves a half-written key, certificate or revocation list behind. Reads of secret files refuse files
// that group or others may access, the way OpenSSH refuses loose private keys.
//
// It must never create a secret file with a mode wider than the one asked for, and never read an
// unbounded amount of data.
package secfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrExists is returned by Write when the target exists and overwriting was not asked for.
var ErrExists = errors.New("file already exists")

// Write atomically writes data to path with the given permission bits.
// With overwrite false it fails with ErrExists when path already exists, and never replaces it.
func Write(path string, data []byte, perm fs.FileMode, overwrite bool) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName) // no-op once renamed or linked away
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if overwrite {
		err = os.Rename(tmpName, path)
	} else {
		// link(2) fails if the target exists, so a concurrent writer can never be overwritten.
		err = os.Link(tmpName, path)
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w (remove it first or use --force)", path, ErrExists)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}

// ReadSecret reads a secret file of at most maxSize bytes. It refuses anything that is not a regular
// file and any file whose mode lets group or others read or write it.
func ReadSecret(path string, maxSize int64) ([]byte, error) {
	return read(path, maxSize, true)
}

// Read reads a public file (certificate, public key, revocation list) of at most maxSize bytes.
func Read(path string, maxSize int64) ([]byte, error) {
	return read(path, maxSize, false)
}

func read(path string, maxSize int64, secret bool) ([]byte, error) {
	// O_NONBLOCK (on unix) keeps open(2) from blocking on a FIFO with no writer, so a non-regular file
	// is refused below instead of hanging the caller; it has no effect on reads of regular files.
	f, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if secret && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("refusing to load %s: mode %04o lets other users read or change a private key; run chmod 600 %s",
			path, info.Mode().Perm(), path)
	}
	if info.Size() > maxSize {
		return nil, fmt.Errorf("%s is %d bytes, more than the %d bytes allowed", path, info.Size(), maxSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > maxSize {
		return nil, fmt.Errorf("%s grew past the %d bytes allowed while being read", path, maxSize)
	}
	return data, nil
}
