package control

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"x0tta6bl4/internal/control/store/storetest"
)

// TestBackupRestoreControlPlane backs up an initialised control plane of each driver and restores
// it onto every driver: the CA files come back byte for byte, the admin account with them, and a
// second restore into the same place is refused.
func TestBackupRestoreControlPlane(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, from := range storetest.Backends(t) {
		for _, to := range storetest.Backends(t) {
			t.Run(from.Name+"-to-"+to.Name, func(t *testing.T) {
				src := testConfig(t, from.Config(t))
				if err := src.Validate(); err != nil {
					t.Fatal(err)
				}
				if _, err := Init(ctx, src, InitOptions{TrustDomain: "backup.test", Admin: "alice"}, now); err != nil {
					t.Fatal(err)
				}
				var archive bytes.Buffer
				sum, err := Backup(ctx, src, &archive)
				if err != nil {
					t.Fatal(err)
				}
				if sum.Rows["users"] != 1 || sum.CAFiles < 3 {
					t.Fatalf("backup summary %+v", sum)
				}
				dst := testConfig(t, to.Config(t))
				if err := dst.Validate(); err != nil {
					t.Fatal(err)
				}
				got, err := Restore(ctx, dst, bytes.NewReader(archive.Bytes()))
				if err != nil {
					t.Fatal(err)
				}
				if got.CAFiles != sum.CAFiles || got.Rows["users"] != 1 {
					t.Fatalf("restore summary %+v, backup %+v", got, sum)
				}
				for _, f := range []string{"ca.key", "ca.crt", "crl.pem"} {
					a, err1 := os.ReadFile(filepath.Join(src.CADir, f))
					b, err2 := os.ReadFile(filepath.Join(dst.CADir, f))
					if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
						t.Fatalf("%s differs after restore (%v, %v)", f, err1, err2)
					}
				}
				if _, err := Restore(ctx, dst, bytes.NewReader(archive.Bytes())); err == nil || !strings.Contains(err.Error(), "not empty") {
					t.Fatalf("second restore: %v", err)
				}
			})
		}
	}
}

// TestRestoreRefusesBadArchives leaves no CA file behind when the archive is not a backup.
func TestRestoreRefusesBadArchives(t *testing.T) {
	ctx := context.Background()
	b := storetest.Backends(t)[0]
	for name, data := range map[string][]byte{"empty": nil, "not gzip": []byte("hello"), "gzip of nothing": {0x1f, 0x8b}} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			dst := testConfig(t, b.Config(t))
			if err := dst.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := Restore(ctx, dst, bytes.NewReader(data)); err == nil {
				t.Fatal("accepted")
			}
			if entries, _ := os.ReadDir(dst.CADir); len(entries) != 0 {
				t.Fatalf("CA directory after a refused restore: %v", entries)
			}
		})
	}
}
