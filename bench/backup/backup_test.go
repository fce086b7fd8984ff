// Package backupbench measures Lifeline's backups on this machine, side by
// side with pgBackRest: `pgbench -i -s 50` (about 750 MB), a full backup
// (throughput in MiB/s of the database size), a restore (files on disk, and
// until the restored server is read-write), and a point-in-time restore to
// a moment between two batches (rows checked). Lifeline: zstd level 3, two
// parallel workers, file:// repository, unencrypted and encrypted (AES-256-GCM);
// pgBackRest (../shared/peers/bench_pgbackrest.sh): compress-type zst (its
// default level 3), process-max 2, same scale, same machine, same run. Like
// the peer script, the backups start once the archive has caught up with
// pgbench's WAL, and an untimed restore precedes the timed ones.
//
//	go test ./bench/backup -run XXX -bench . -benchtime 1x -v -timeout 30m
//
// BENCH_SCALE (default 50) sets pgbench's scale; BENCH_PEERS=0 skips pgBackRest.
package backupbench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/bench"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/objstore"
	"github.com/lifeline-dr/lifeline/postgres"
)

const mib = 1 << 20

type figures struct {
	backupMiBps, backupSeconds float64
	streamSeconds              float64 // until the server ended the backup and the parts were stored
	encMiBps                   float64
	restoreFiles, restoreTotal float64
	pitrTotal                  float64
	dbSize, stored             int64
	pitrRows                   string
}

func BenchmarkBackup(b *testing.B) {
	scale := 50
	if n, err := strconv.Atoi(os.Getenv("BENCH_SCALE")); err == nil && n > 0 {
		scale = n
	}
	for i := 0; i < b.N; i++ {
		f := lifeline(b, scale)
		fmt.Printf("\n== Lifeline backups, pgbench -s %d (database %d MiB), zstd 3, 2 workers, file://\n", scale, f.dbSize/mib)
		fmt.Printf("full backup:   %6.2fs  %7.1f MiB/s of database size (stored %d MiB; streamed in %.2fs, then waited for WAL)\n", f.backupSeconds, f.backupMiBps, f.stored/mib, f.streamSeconds)
		fmt.Printf("  encrypted:            %7.1f MiB/s (AES-256-GCM)\n", f.encMiBps)
		fmt.Printf("restore:       files %.2fs, until read-write %.2fs\n", f.restoreFiles, f.restoreTotal)
		fmt.Printf("PITR:          until read-write %.2fs (%s)\n", f.pitrTotal, f.pitrRows)
		b.ReportMetric(f.backupMiBps, "backup-MiB/s")
		b.ReportMetric(f.restoreTotal, "restore-s")
		if os.Getenv("BENCH_PEERS") != "0" {
			peer(b, scale, f)
		}
	}
}

func lifeline(b *testing.B, scale int) figures {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	dir := testenv.Dir(b)
	owner := testenv.Owner(b)
	bin := testenv.PGBin(b)
	sub := testenv.Subnet(b)
	walBin := walBinary(b, dir)

	repoURL := "file://" + filepath.Join(dir, "repo")
	if err := backup.PrepareFileRepo(repoURL, "bench", owner); err != nil {
		b.Fatal(err)
	}
	conf := filepath.Join(dir, "archive.json")
	if err := backup.WriteArchiveConfig(conf, backup.ArchiveConfig{URL: repoURL, Workload: "bench"}, owner); err != nil {
		b.Fatal(err)
	}
	restoreCmd := fmt.Sprintf("%s wal-fetch --config %s %%f %%p", walBin, conf)
	pg := postgres.New(postgres.Config{
		Name: "bench", BinDir: bin, Dir: filepath.Join(dir, "primary"), Owner: owner, Address: sub + ".1", Port: 5432,
		Superuser: "postgres", ReplicationUser: "replicator", Trust: []string{"127.0.0.1", sub + ".1"},
		Parameters: map[string]string{"shared_buffers": "256MB", "max_wal_size": "2GB", "checkpoint_timeout": "30min"},
	})
	b.Cleanup(func() { stop(pg) })
	if err := pg.InitDB(ctx); err != nil {
		b.Fatal(err)
	}
	if err := pg.WriteConfig(postgres.Settings{AppName: "bench", Extra: map[string]string{
		"archive_mode": "on", "archive_command": fmt.Sprintf("%s wal-push --config %s %%p", walBin, conf),
	}}); err != nil {
		b.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		b.Fatal(err)
	}
	psql := func(sql string) string {
		out, err := exec.Command(filepath.Join(bin, "psql"), "-h", sub+".1", "-U", "postgres", "-XAtqc", sql).CombinedOutput()
		if err != nil {
			b.Fatalf("psql %s: %v\n%s", sql, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if out, err := exec.Command(filepath.Join(bin, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), "-h", sub+".1", "-U", "postgres", "postgres").CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	psql("CHECKPOINT")
	// Both tools start from an archive that has caught up with pgbench's
	// WAL (the peer script runs `pgbackrest check` first): otherwise the
	// first backup shares the machine with the archiver's backlog and waits
	// for it to reach the backup's last segment.
	drained := psql("SELECT pg_walfile_name(pg_switch_wal())")
	waitArchived(b, filepath.Join(dir, "repo", "bench", "wal", drained), 5*time.Minute)
	var f figures
	f.dbSize, _ = strconv.ParseInt(psql("SELECT sum(pg_database_size(datname)) FROM pg_database"), 10, 64)
	src := backup.Source{BinDir: bin, Owner: owner, Host: sub + ".1", Port: 5432, User: "postgres", Node: "bench"}
	switchWAL := func(context.Context) error { psql("SELECT pg_switch_wal()"); return nil }
	log := slog.New(slog.DiscardHandler)

	repo, err := backup.Open(ctx, repoURL, objstore.Options{CompressionLevel: 3}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer repo.Close()
	_ = exec.Command("sync").Run()
	start := time.Now()
	var streamed time.Duration
	info, err := repo.Backup(ctx, src, backup.BackupOptions{Parallel: 2, SwitchWAL: switchWAL, Logger: log,
		Progress: func(p backup.Progress) {
			if p.Phase == "wal" && streamed == 0 {
				streamed = p.Elapsed
			}
		}})
	if err != nil {
		b.Fatal(err)
	}
	f.backupSeconds = time.Since(start).Seconds()
	f.streamSeconds = streamed.Seconds()
	f.backupMiBps = float64(f.dbSize) / mib / f.backupSeconds
	f.stored = info.StoredBytes

	// The same backup, encrypted, into a second repository.
	key, _ := objstore.KeyFromSecret("bench passphrase")
	encURL := "file://" + filepath.Join(dir, "repo-enc")
	if err := backup.PrepareFileRepo(encURL, "bench", owner); err != nil {
		b.Fatal(err)
	}
	enc, err := backup.Open(ctx, encURL, objstore.Options{CompressionLevel: 3, Key: key}, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer enc.Close()
	_ = exec.Command("sync").Run()
	start = time.Now()
	// WAL goes to the first repository; this one only measures the base backup
	// (it waits for WAL that will never arrive, so measure until the parts are in).
	var copied time.Duration
	_, _ = enc.Backup(ctx, src, backup.BackupOptions{Parallel: 2, SwitchWAL: switchWAL, Logger: log, WALTimeout: time.Second,
		Progress: func(p backup.Progress) {
			if p.Phase == "wal" && copied == 0 {
				copied = p.Elapsed
			}
		}})
	if copied == 0 {
		copied = time.Since(start)
	}
	f.encMiBps = float64(f.dbSize) / mib / copied.Seconds()

	// An untimed restore first, as the peer script does: on this VM the
	// first large write into never-written disk blocks is several times
	// slower, which would penalise whichever restore runs first.
	warm := filepath.Join(dir, "warmup")
	if _, err := repo.Restore(ctx, warm, backup.Target{Latest: true}, backup.RestoreOptions{RestoreCommand: restoreCmd, Owner: owner, Parallel: 2}); err != nil {
		b.Fatal(err)
	}
	if err := os.RemoveAll(warm); err != nil {
		b.Fatal(err)
	}

	// Restore everything, start, wait until read-write.
	f.restoreFiles, f.restoreTotal = restore(b, ctx, repo, dir, "restore", sub+".2", backup.Target{Latest: true}, restoreCmd, owner, bin)
	if n := count(b, bin, sub+".2", "SELECT count(*) FROM pgbench_accounts"); n != strconv.Itoa(scale*100000) {
		b.Fatalf("restored pgbench_accounts has %s rows, want %d", n, scale*100000)
	}

	// Point in time: between two batches.
	psql("CREATE TABLE pitr_t (id int, batch text)")
	psql("INSERT INTO pitr_t SELECT g, 'A' FROM generate_series(1, 10000) g")
	time.Sleep(1500 * time.Millisecond)
	target := time.Now()
	time.Sleep(1500 * time.Millisecond)
	psql("INSERT INTO pitr_t SELECT g, 'B' FROM generate_series(1, 10000) g")
	lastSeg := psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
	psql("SELECT pg_switch_wal()")
	waitArchived(b, filepath.Join(dir, "repo", "bench", "wal", lastSeg), time.Minute)
	_, f.pitrTotal = restore(b, ctx, repo, dir, "pitr", sub+".3", backup.Target{Time: target}, restoreCmd, owner, bin)
	f.pitrRows = count(b, bin, sub+".3", "SELECT count(*) FILTER (WHERE batch = 'A') || ' A / ' || count(*) FILTER (WHERE batch = 'B') || ' B' FROM pitr_t")
	if f.pitrRows != "10000 A / 0 B" {
		b.Fatalf("PITR rows: %s, want 10000 A / 0 B", f.pitrRows)
	}
	return f
}

// walBinary copies lifeline into dir/bin, where PostgreSQL's OS user can
// run it as archive_command and restore_command.
func walBinary(b *testing.B, dir string) string {
	src := topotest.Binary(b)
	dst := filepath.Join(dir, "bin", "lifeline")
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		b.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		b.Fatal(err)
	}
	return dst
}

func restore(b *testing.B, ctx context.Context, repo *backup.Repo, dir, name, addr string, t backup.Target, restoreCmd string, owner *postgres.Owner, bin string) (files, total float64) {
	inst := postgres.New(postgres.Config{
		Name: name, BinDir: bin, Dir: filepath.Join(dir, name), Owner: owner, Address: addr, Port: 5432,
		Superuser: "postgres", ReplicationUser: "replicator", Trust: []string{"127.0.0.1", addr},
		Parameters: map[string]string{"shared_buffers": "256MB"},
	})
	b.Cleanup(func() { stop(inst) })
	_ = exec.Command("sync").Run()
	start := time.Now()
	if _, err := repo.Restore(ctx, inst.DataDir(), t, backup.RestoreOptions{RestoreCommand: restoreCmd, Owner: owner, Parallel: 2}); err != nil {
		b.Fatal(err)
	}
	files = time.Since(start).Seconds()
	if err := inst.WriteConfig(postgres.Settings{AppName: name, Extra: map[string]string{"archive_mode": "off"}}); err != nil {
		b.Fatal(err)
	}
	if err := inst.Start(ctx); err != nil {
		b.Fatal(err)
	}
	for {
		st, err := inst.Status(ctx)
		if err == nil && !st.InRecovery {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return files, time.Since(start).Seconds()
}

func count(b *testing.B, bin, addr, sql string) string {
	out, err := exec.Command(filepath.Join(bin, "psql"), "-h", addr, "-U", "postgres", "-XAtqc", sql).CombinedOutput()
	if err != nil {
		b.Fatalf("%s: %v\n%s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

func waitArchived(b *testing.B, path string, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not archived after %s", path, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func stop(pg *postgres.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_ = pg.Stop(ctx)
}

var summaryRe = regexp.MustCompile(`(?m)^(\S+)\s+([0-9.]+)\s+([0-9.]+)\s+([0-9.]+)\s+raw=`)

func peer(b *testing.B, scale int, ours figures) {
	script := bench.PeerScript("bench_pgbackrest.sh")
	if script == "" {
		fmt.Println("peer: ../shared/peers/bench_pgbackrest.sh not found; skipped")
		return
	}
	fmt.Printf("\n== peer: pgBackRest (bench_pgbackrest.sh), SCALE=%d REPS=1\n", scale)
	out, err := bench.RunPeer(context.Background(), script, testenv.Dir(b), 25*time.Minute, []string{"SCALE=" + strconv.Itoa(scale), "REPS=1"})
	if err != nil {
		fmt.Printf("peer failed: %v (install: apt-get install pgbackrest)\n%s\n", err, tail(string(out), 15))
		return
	}
	m := map[string]float64{}
	for _, g := range summaryRe.FindAllStringSubmatch(string(out), -1) {
		v, _ := strconv.ParseFloat(g[3], 64)
		m[g[1]] = v
		fmt.Printf("  %-34s %9.2f\n", g[1], v)
	}
	if pb := m["backup_zst_pm2_MiBps"]; pb > 0 {
		fmt.Printf("\nbackup throughput: Lifeline %.1f MiB/s, pgBackRest (zst, process-max 2) %.1f MiB/s: ratio %.2f\n", ours.backupMiBps, pb, ours.backupMiBps/pb)
	}
	if pr := m["restore_zst_pm2_total_s"]; pr > 0 {
		fmt.Printf("restore until read-write: Lifeline %.2fs, pgBackRest %.2fs: Lifeline %.2fx as fast\n", ours.restoreTotal, pr, pr/ours.restoreTotal)
	}
	if pf := m["restore_zst_pm2_files_s"]; pf > 0 {
		fmt.Printf("restore files: Lifeline %.2fs, pgBackRest %.2fs\n", ours.restoreFiles, pf)
	}
	if pp := m["pitr_total_s"]; pp > 0 {
		fmt.Printf("PITR until read-write: Lifeline %.2fs, pgBackRest %.2fs: Lifeline %.2fx as fast\n", ours.pitrTotal, pp, pp/ours.pitrTotal)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
