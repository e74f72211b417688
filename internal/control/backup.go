package control

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"x0tta6bl4/internal/control/store"
	"x0tta6bl4/internal/secfile"
)

// A backup is a gzipped tar holding backupDB (the database dump, store.Backup) and the mesh CA
// directory under backupCA: the CA key, its certificates and the signed revocation list, without
// which a restored database could neither sign nor say which certificates are revoked.
const (
	backupDB = "database.jsonl"
	backupCA = "ca/"
	// maxBackupCAFile bounds one CA file read back from an archive (the CA directory holds keys,
	// certificates and a revocation list, each far smaller).
	maxBackupCAFile = 64 << 20
)

// BackupSummary says what a backup wrote or a restore read.
type BackupSummary struct {
	store.BackupStats
	CAFiles int
}

func openStore(ctx context.Context, cfg Config) (*store.Store, error) {
	return store.Open(ctx, store.Config{Driver: cfg.Database.Driver, Path: cfg.Database.Path, DSN: cfg.Database.DSN,
		Synchronous: cfg.Database.Synchronous, MaxOpenConns: cfg.Database.MaxOpenConns})
}

// Backup writes a backup of the control plane that cfg describes to w while it may be running:
// the database as of one instant (store.Backup), then the CA directory's files.
func Backup(ctx context.Context, cfg Config, w io.Writer) (BackupSummary, error) {
	var sum BackupSummary
	if err := cfg.Validate(); err != nil {
		return sum, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	defer st.Close()
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	// The dump goes to a temporary file first: a tar entry needs its size up front, and a large
	// database should not have to fit in memory.
	tmp, err := os.CreateTemp("", "x0tta6bl4-backup-*")
	if err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	if sum.BackupStats, err = st.Backup(ctx, tmp); err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	size, err := tmp.Seek(0, io.SeekCurrent)
	if err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	now := time.Now()
	if err := tw.WriteHeader(&tar.Header{Name: backupDB, Mode: 0o600, Size: size, ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	if _, err := io.Copy(tw, tmp); err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	err = filepath.WalkDir(cfg.CADir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || d.Name() == "lock" {
			return nil
		}
		rel, err := filepath.Rel(cfg.CADir, p)
		if err != nil {
			return err
		}
		data, err := secfile.Read(p, maxBackupCAFile)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: backupCA + filepath.ToSlash(rel), Mode: int64(info.Mode().Perm()), Size: int64(len(data)),
			ModTime: info.ModTime(), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		sum.CAFiles++
		_, err = tw.Write(data)
		return err
	})
	if err != nil {
		return sum, fmt.Errorf("backup: CA directory %s: %w", cfg.CADir, err)
	}
	if err := tw.Close(); err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	if err := zw.Close(); err != nil {
		return sum, fmt.Errorf("backup: %w", err)
	}
	return sum, nil
}

// Restore reads a backup into the control plane that cfg describes, which must be new: an empty
// database (of either driver: the dump is driver-neutral) and no CA directory, or an empty one.
// The database is restored in one transaction; if that or any CA file fails, the CA files written
// are removed again (a failure after the database step leaves it restored: start again with a new
// database).
func Restore(ctx context.Context, cfg Config, r io.Reader) (BackupSummary, error) {
	var sum BackupSummary
	if err := cfg.Validate(); err != nil {
		return sum, err
	}
	if entries, err := os.ReadDir(cfg.CADir); err == nil && len(entries) > 0 {
		return sum, fmt.Errorf("restore: the CA directory %s is not empty; restore into a new data directory", cfg.CADir)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return sum, fmt.Errorf("restore: %w", err)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return sum, fmt.Errorf("restore: %w", err)
	}
	defer st.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return sum, fmt.Errorf("restore: not a control-plane backup: %w", err)
	}
	tr := tar.NewReader(zr)
	var written []string
	undo := func() {
		for i := len(written) - 1; i >= 0; i-- {
			os.Remove(written[i])
		}
	}
	restored := false
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			undo()
			return sum, fmt.Errorf("restore: %w", err)
		}
		switch {
		case h.Name == backupDB && h.Typeflag == tar.TypeReg:
			if restored {
				undo()
				return sum, errors.New("restore: two database dumps in one backup")
			}
			if sum.BackupStats, err = st.Restore(ctx, tr); err != nil {
				undo()
				return sum, fmt.Errorf("restore: %w", err)
			}
			restored = true
		case strings.HasPrefix(h.Name, backupCA) && h.Typeflag == tar.TypeReg:
			rel := path.Clean(strings.TrimPrefix(h.Name, backupCA))
			if rel == "." || !fs.ValidPath(rel) || h.Size > maxBackupCAFile || h.Size < 0 {
				undo()
				return sum, fmt.Errorf("restore: bad CA entry %q", h.Name)
			}
			data, err := io.ReadAll(io.LimitReader(tr, h.Size))
			if err != nil {
				undo()
				return sum, fmt.Errorf("restore: %w", err)
			}
			dst := filepath.Join(cfg.CADir, filepath.FromSlash(rel))
			if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
				undo()
				return sum, fmt.Errorf("restore: %w", err)
			}
			if err := secfile.Write(dst, data, fs.FileMode(h.Mode).Perm()&0o600, false); err != nil {
				undo()
				return sum, fmt.Errorf("restore: %w", err)
			}
			written = append(written, dst)
			sum.CAFiles++
		default:
			undo()
			return sum, fmt.Errorf("restore: unexpected entry %q", h.Name)
		}
	}
	if !restored {
		undo()
		return sum, errors.New("restore: the backup holds no database dump")
	}
	if sum.CAFiles == 0 {
		return sum, errors.New("restore: the backup holds no CA files")
	}
	return sum, nil
}
