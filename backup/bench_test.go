package backup_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/internal/testenv"
)

// BenchmarkBackupRestore measures base backup and restore of a pgbench
// database at scale 10 (about 160 MB of data files) through a file://
// repository with zstd and AES-256-GCM, in MB/s of tar stream. The
// pg_basebackup sub-benchmark is the baseline: the same stream read into
// /dev/null, the speed limit of the source.
//
//	go test ./backup/ -run '^$' -bench BackupRestore -benchtime 3x
func BenchmarkBackupRestore(b *testing.B) {
	ctx := context.Background()
	repo := fileRepo(b, "bench", testKey)
	src := startCluster(b, repo, map[string]string{"max_wal_size": "1GB"})
	pgbench := exec.Command(filepath.Join(testenv.PGBin(b), "pgbench"), "-i", "-s", "10", "-q",
		"-h", src.addr, "-p", "5432", "-U", "postgres", "postgres")
	o := testenv.Owner(b)
	if o != nil {
		pgbench.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: o.UID, Gid: o.GID}}
	}
	pgbench.Dir = "/"
	if out, err := pgbench.CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	src.archiveAll(b)
	r := repo.open(b)

	b.Run("pg_basebackup", func(b *testing.B) {
		var n int64
		for b.Loop() {
			cmd := exec.Command(filepath.Join(testenv.PGBin(b), "pg_basebackup"), "-D", "-", "-Ft", "-X", "none",
				"--checkpoint=fast", "-h", src.addr, "-p", "5432", "-U", "replicator", "--no-password")
			cmd.SysProcAttr = pgbench.SysProcAttr
			cmd.Dir = "/"
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			n, _ = io.Copy(io.Discard, out)
			if err := cmd.Wait(); err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(n)
	})

	var info *backup.Info
	for _, par := range []int{1, 4} {
		b.Run(fmt.Sprintf("backup/parallel=%d", par), func(b *testing.B) {
			for b.Loop() {
				var err error
				info, err = r.Backup(ctx, src.source(b), backup.BackupOptions{PartSize: 32 << 20, Parallel: par, SwitchWAL: src.switchWAL})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(info.Bytes)
			b.ReportMetric(float64(info.StoredBytes)/float64(info.Bytes), "stored/tar")
		})
	}
	for _, par := range []int{1, 4} {
		b.Run(fmt.Sprintf("restore/parallel=%d", par), func(b *testing.B) {
			base := testenv.Dir(b)
			i := 0
			for b.Loop() {
				i++
				dir := filepath.Join(base, fmt.Sprint(i))
				res, err := r.Restore(ctx, dir, backup.Target{Latest: true}, backup.RestoreOptions{
					RestoreCommand: repo.RestoreCommand(), Owner: o, Parallel: par})
				if err != nil {
					b.Fatal(err)
				}
				if res.Backup.ID != info.ID {
					b.Fatalf("restored %s, want %s", res.Backup.ID, info.ID)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
			b.SetBytes(info.Bytes)
		})
	}
}
