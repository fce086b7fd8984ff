package backup_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/objstore"
	"github.com/lifeline-dr/lifeline/postgres"
)

// history is what the fixture did to the source, in order:
//
//	b1 · batch 1 (100 rows) · t1 · batch 2 (200) · t2 · b2 · batch 3 (300) · t3, lsn3 ·
//	b3 · batch 4 (400) · t4 · segment switch · marker table · segment switch
//
// A restore to a point between two batches must hold exactly the batches
// before it: the row counts 100, 300, 600, 1000 tell them apart.
type history struct {
	repo    repoSpec
	r       *backup.Repo
	src     *cluster
	b       [4]*backup.Info // b[1..3]
	t       [5]time.Time    // t[1..4]: after batch i committed
	lsn3    lifeline.LSN
	before3 time.Time // after backup 2 returned, before batch 3 began
	lastSeg string    // the segment holding batch 4
}

func rowsAfter(batch int) int64 {
	var n int64
	for i := 1; i <= batch; i++ {
		n += int64(i * 100)
	}
	return n
}

func newHistory(t *testing.T) *history {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := &history{repo: fileRepo(t, "orders", testKey)}
	h.r = h.repo.open(t)
	h.src = startCluster(t, h.repo, nil)
	h.src.exec(t, "CREATE TABLE t (batch int, id int, PRIMARY KEY (batch, id))")

	var progress atomic.Int32
	take := func(i int) {
		t.Helper()
		info, err := h.r.Backup(ctx, h.src.source(t), backup.BackupOptions{
			PartSize: 4 << 20, Parallel: 3, SwitchWAL: h.src.switchWAL,
			Progress: func(backup.Progress) { progress.Add(1) },
		})
		if err != nil {
			t.Fatalf("backup %d: %v", i, err)
		}
		h.b[i] = info
	}
	batch := func(i int) {
		t.Helper()
		h.src.exec(t, "INSERT INTO t SELECT $1::int, g FROM generate_series(1, $1::int * 100) g", i)
		// Read the clock after the commit: every later commit is after it.
		ts := h.src.query(t, "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
		tm, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			t.Fatal(err)
		}
		h.t[i] = tm
		time.Sleep(20 * time.Millisecond)
	}
	take(1)
	batch(1)
	batch(2)
	take(2)
	h.before3 = time.Now()
	batch(3)
	lsn, err := lifeline.ParseLSN(h.src.query(t, "SELECT pg_current_wal_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	h.lsn3 = lsn
	take(3)
	batch(4)
	h.lastSeg = h.src.archiveAll(t)
	h.src.exec(t, "CREATE TABLE marker (v int)")
	h.src.archiveAll(t)
	if progress.Load() < 3 {
		t.Errorf("Progress called %d times, want at least once per backup", progress.Load())
	}
	return h
}

func TestRepo_BackupRestore(t *testing.T) {
	h := newHistory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	t.Run("List", func(t *testing.T) {
		list, err := h.r.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 3 {
			t.Fatalf("List: %d backups, want 3", len(list))
		}
		for i, b := range list {
			want := h.b[i+1]
			if b.ID != want.ID || b.StopLSN != want.StopLSN || !b.StopTime.Equal(want.StopTime) {
				t.Errorf("List[%d] = %s stop %s at %s, want %s stop %s at %s", i, b.ID, b.StopLSN, b.StopTime, want.ID, want.StopLSN, want.StopTime)
			}
		}
		b := h.b[2]
		if b.Workload != "orders" || b.Node != "eu-west/a" || b.SystemID == 0 || !strings.HasPrefix(b.PGVersion, "15") ||
			b.WALSegmentSize != 16<<20 || b.Timeline != 1 || b.StartLSN >= b.StopLSN || b.From != "primary" ||
			len(b.Parts) < 2 || b.Bytes == 0 || b.StoredBytes == 0 || !b.Encrypted || b.Files == 0 {
			t.Errorf("backup info = %+v", b)
		}
		got, err := h.r.Info(ctx, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != b.ID || len(got.Parts) != len(b.Parts) || got.Parts[0] != b.Parts[0] {
			t.Errorf("Info(%s) = %+v, want %+v", b.ID, got, b)
		}
		if _, err := h.r.Info(ctx, "20000101T000000Z"); !errors.Is(err, backup.ErrNotFound) {
			t.Errorf("Info of a missing backup: %v, want ErrNotFound", err)
		}
	})

	pitr := []struct {
		name   string
		target backup.Target
		backup int
		rows   int64
	}{
		{"time between batch 1 and 2", backup.Target{Time: h.t[1]}, 1, rowsAfter(1)},
		{"time between batch 3 and 4", backup.Target{Time: h.t[3]}, 2, rowsAfter(3)},
		{"lsn after batch 3", backup.Target{LSN: h.lsn3}, 2, rowsAfter(3)},
		{"latest", backup.Target{Latest: true}, 3, rowsAfter(4)},
	}
	for _, tc := range pitr {
		t.Run("PITR/"+tc.name, func(t *testing.T) {
			res, err := h.r.Verify(ctx, filepath.Join(testenv.Dir(t), "scratch"), verifyOpts(t, h.repo, h.src.net+".2", tc.target))
			if err != nil {
				t.Fatalf("Verify: %v\n%s", err, res.Log)
			}
			if got, want := res.Restore.Backup.ID, h.b[tc.backup].ID; got != want {
				t.Errorf("restored from %s, want backup %d (%s)", got, tc.backup, want)
			}
			if got := rows(t, res, "t"); got != tc.rows {
				t.Errorf("table t has %d rows, want %d", got, tc.rows)
			}
			if !res.Passed || !res.Amcheck || res.Indexes == 0 || res.Timeline != 2 {
				t.Errorf("Verify result: passed %v amcheck %v indexes %d timeline %d", res.Passed, res.Amcheck, res.Indexes, res.Timeline)
			}
			t.Logf("restore %.2fs, recovery %.2fs, total %.2fs, reached %s", res.RestoreSeconds, res.RecoverySeconds, res.TotalSeconds, res.ReachedLSN)
		})
	}

	t.Run("PITR/before the oldest backup", func(t *testing.T) {
		dir := filepath.Join(testenv.Dir(t), "data")
		_, err := h.r.Restore(ctx, dir, backup.Target{Time: h.b[1].StopTime.Add(-time.Second)}, backup.RestoreOptions{RestoreCommand: "false"})
		if !errors.Is(err, backup.ErrNoBackup) || !strings.Contains(err.Error(), h.b[1].ID) {
			t.Errorf("Restore before the oldest backup: %v, want ErrNoBackup naming %s", err, h.b[1].ID)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("failed restore left %s behind", dir)
		}
	})

	t.Run("PITR/future target means latest", func(t *testing.T) {
		dir := filepath.Join(testenv.Dir(t), "data")
		res, err := h.r.Restore(ctx, dir, backup.Target{Time: time.Now().Add(time.Hour)}, backup.RestoreOptions{
			RestoreCommand: h.repo.RestoreCommand(), Owner: testenv.Owner(t)})
		if err != nil {
			t.Fatal(err)
		}
		if !res.Target.Latest || len(res.Notes) == 0 || res.Backup.ID != h.b[3].ID {
			t.Errorf("future target: target %s, backup %s, notes %q; want latest from %s with a note", res.Target, res.Backup.ID, res.Notes, h.b[3].ID)
		}
		if !strings.Contains(res.RecoveryConf, "recovery_target_time = ''") || !strings.Contains(res.RecoveryConf, "restore_command = ") {
			t.Errorf("recovery settings:\n%s", res.RecoveryConf)
		}
		for _, f := range []string{"recovery.signal", "PG_VERSION", "backup_label", "global/pg_control"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("restored directory: %v", err)
			}
		}
		if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("restored directory mode: %v %v, want 0700", st.Mode(), err)
		}
		if _, err := h.r.Restore(ctx, dir, backup.Target{Latest: true}, backup.RestoreOptions{RestoreCommand: "false"}); !errors.Is(err, backup.ErrNotEmpty) {
			t.Errorf("restore into a non-empty directory: %v, want ErrNotEmpty", err)
		}
	})

	t.Run("CrossRegion", func(t *testing.T) {
		// Region A is a copy of the repository (the original stays for the
		// other subtests); region B an S3 bucket. Copy A to B, delete A,
		// restore in B.
		specA, a := clone(t, h.r, h.repo)
		s3 := newS3(t)
		specB := s3.repo(t, "orders", testKey)
		b := specB.open(t)
		rep, err := a.CopyTo(ctx, b, backup.CopyOptions{Parallel: 4})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Backups != 3 || rep.WAL == 0 || rep.NewestWAL != rep.SourceNewestWAL || rep.NewestBackup != h.b[3].ID || rep.NewestWALTime.IsZero() {
			t.Errorf("copy report %+v", rep)
		}
		again, err := a.CopyTo(ctx, b, backup.CopyOptions{})
		if err != nil || again.Objects != 0 || again.Present != rep.Objects {
			t.Errorf("second copy: %+v, %v; want nothing copied, %d present", again, err, rep.Objects)
		}
		a.Close()
		if err := os.RemoveAll(specA.dir); err != nil {
			t.Fatal(err)
		}
		res, err := b.Verify(ctx, filepath.Join(testenv.Dir(t), "scratch"), verifyOpts(t, specB, h.src.net+".3", backup.Target{Time: h.t[3]}))
		if err != nil {
			t.Fatalf("Verify in region B: %v\n%s", err, res.Log)
		}
		if got := rows(t, res, "t"); got != rowsAfter(3) {
			t.Errorf("region B at t3: %d rows, want %d", got, rowsAfter(3))
		}
	})
}

// TestRepo_Damage damages copies of the repository and checks that restores
// stop with an error naming the object and the reason, and never start a
// database that silently lacks data.
func TestRepo_Damage(t *testing.T) {
	h := newHistory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	walFile := func(spec repoSpec, name string) string { return filepath.Join(spec.dir, "orders", "wal", name) }

	t.Run("flipped byte in WAL", func(t *testing.T) {
		spec, r := clone(t, h.r, h.repo)
		flipByte(t, walFile(spec, h.lastSeg), 500)
		res, err := r.Verify(ctx, filepath.Join(testenv.Dir(t), "scratch"), verifyOpts(t, spec, h.src.net+".4", backup.Target{Latest: true}))
		if !errors.Is(err, backup.ErrVerifyFailed) || res == nil || res.Passed {
			t.Fatalf("Verify of a damaged archive: %v", err)
		}
		t.Logf("Verify: %s", res.Failure)
		if !strings.Contains(res.Failure, "orders/wal/"+h.lastSeg) || !strings.Contains(res.Failure, "corrupt") {
			t.Errorf("failure does not name the object and the reason: %s", res.Failure)
		}
		// FetchWAL says the same, and leaves nothing at dest.
		dest := filepath.Join(testenv.Dir(t), "RECOVERYXLOG")
		err = r.FetchWAL(ctx, h.lastSeg, dest)
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), h.lastSeg) || backup.FetchExitCode(err) != backup.FatalExitCode {
			t.Errorf("FetchWAL of a damaged segment: %v", err)
		}
		if _, serr := os.Stat(dest); !os.IsNotExist(serr) {
			t.Errorf("FetchWAL left %s behind", dest)
		}
	})

	t.Run("missing segment", func(t *testing.T) {
		spec, r := clone(t, h.r, h.repo)
		if err := os.Remove(walFile(spec, h.lastSeg)); err != nil {
			t.Fatal(err)
		}
		_, err := r.Restore(ctx, filepath.Join(testenv.Dir(t), "data"), backup.Target{Latest: true}, backup.RestoreOptions{RestoreCommand: spec.RestoreCommand()})
		t.Logf("Restore: %v", err)
		if !errors.Is(err, backup.ErrWALGap) || !strings.Contains(err.Error(), h.lastSeg) {
			t.Errorf("Restore over a gap: %v, want ErrWALGap naming %s", err, h.lastSeg)
		}
		res, err := r.Verify(ctx, filepath.Join(testenv.Dir(t), "scratch"), verifyOpts(t, spec, h.src.net+".5", backup.Target{Latest: true}))
		if !errors.Is(err, backup.ErrWALGap) || res.Passed {
			t.Errorf("Verify over a gap: %v, want ErrWALGap", err)
		}
		err = r.FetchWAL(ctx, h.lastSeg, filepath.Join(testenv.Dir(t), "x"))
		if !errors.Is(err, backup.ErrWALGap) || backup.FetchExitCode(err) != backup.FatalExitCode {
			t.Errorf("FetchWAL of a segment in a gap: %v (exit %d)", err, backup.FetchExitCode(err))
		}
	})

	t.Run("segment deleted after restore", func(t *testing.T) {
		// The restore's own check passed; the hole appears before the server
		// starts. restore_command must stop PostgreSQL, not let it promote.
		spec, r := clone(t, h.r, h.repo)
		dir := filepath.Join(testenv.Dir(t), "pg")
		inst := restoredInstance(t, dir, h.src.net+".6")
		if _, err := r.Restore(ctx, inst.DataDir(), backup.Target{Latest: true}, backup.RestoreOptions{
			RestoreCommand: spec.RestoreCommand(), Owner: testenv.Owner(t)}); err != nil {
			t.Fatal(err)
		}
		if err := inst.WriteConfig(postgres.Settings{AppName: "restored"}); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(walFile(spec, h.lastSeg)); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		err := inst.Start(sctx)
		if err == nil {
			t.Fatalf("the server started over a hole in the archive")
		}
		t.Logf("Start: %v", err)
		log, _ := os.ReadFile(inst.LogFile())
		if !strings.Contains(string(log), "WAL archive has a gap") || !strings.Contains(string(log), h.lastSeg) {
			t.Errorf("server log does not say why:\n%s", log)
		}
	})

	t.Run("wrong key", func(t *testing.T) {
		other := h.repo
		other.key = make([]byte, 32)
		r := other.open(t)
		_, err := r.Restore(ctx, filepath.Join(testenv.Dir(t), "data"), backup.Target{Latest: true}, backup.RestoreOptions{RestoreCommand: "false"})
		t.Logf("Restore: %v", err)
		if !errors.Is(err, backup.ErrWrongKey) || !strings.Contains(err.Error(), "manifest.json") {
			t.Errorf("Restore with a wrong key: %v, want ErrWrongKey naming the manifest", err)
		}
		err = r.FetchWAL(ctx, h.lastSeg, filepath.Join(testenv.Dir(t), "x"))
		if !errors.Is(err, backup.ErrWrongKey) || backup.FetchExitCode(err) != backup.FatalExitCode {
			t.Errorf("FetchWAL with a wrong key: %v", err)
		}
	})

	t.Run("flipped byte in a backup part", func(t *testing.T) {
		spec, r := clone(t, h.r, h.repo)
		part := filepath.Join(spec.dir, "orders", "backups", h.b[3].ID, h.b[3].Parts[1].Name)
		flipByte(t, part, 4000)
		dir := filepath.Join(testenv.Dir(t), "data")
		_, err := r.Restore(ctx, dir, backup.Target{Latest: true}, backup.RestoreOptions{RestoreCommand: "false", Parallel: 2})
		t.Logf("Restore: %v", err)
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), h.b[3].Parts[1].Name) {
			t.Errorf("Restore of a damaged part: %v, want ErrCorrupt naming %s", err, h.b[3].Parts[1].Name)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("failed restore left %s behind", dir)
		}
	})

	t.Run("a backup part swapped for an intact object of another backup", func(t *testing.T) {
		spec, r := clone(t, h.r, h.repo)
		dst := filepath.Join(spec.dir, "orders", "backups", h.b[3].ID, h.b[3].Parts[0].Name)
		src := filepath.Join(spec.dir, "orders", "backups", h.b[2].ID, h.b[2].Parts[0].Name)
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = r.Restore(ctx, filepath.Join(testenv.Dir(t), "data"), backup.Target{Latest: true}, backup.RestoreOptions{RestoreCommand: "false", Parallel: 2})
		t.Logf("Restore: %v", err)
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), h.b[3].Parts[0].Name) || !strings.Contains(err.Error(), "manifest.json") {
			t.Errorf("Restore of a swapped part: %v, want ErrCorrupt naming %s and manifest.json", err, h.b[3].Parts[0].Name)
		}
	})
	t.Run("a file changed inside parts that are themselves intact", func(t *testing.T) {
		// Someone re-encodes a part with one byte of PG_VERSION changed and
		// fixes manifest.json to match: every object passes its own checks,
		// only backup_manifest's checksum of the file can tell.
		spec, r := clone(t, h.r, h.repo)
		store, err := objstore.Open(ctx, spec.url, objstore.Options{Key: spec.key})
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		b := h.b[3]
		prefix := "orders/backups/" + b.ID + "/"
		changed := false
		for i, p := range b.Parts {
			rc, err := store.Get(ctx, prefix+p.Name)
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				t.Fatal(err)
			}
			for off := 0; off+1024 <= len(data); off += 512 {
				if string(data[off:off+11]) == "PG_VERSION\x00" {
					data[off+512] ^= 0x01 // "15\n" becomes "05\n"
					changed = true
					break
				}
			}
			if !changed {
				continue
			}
			info, err := store.Put(ctx, prefix+p.Name, bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			b2 := *b
			b2.Parts = append([]backup.Part(nil), b.Parts...)
			b2.StoredBytes += info.StoredSize - p.StoredSize
			b2.Parts[i].SHA256, b2.Parts[i].StoredSize = info.SHA256, info.StoredSize
			j, err := b2.MarshalJSON()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := store.Put(ctx, prefix+"manifest.json", bytes.NewReader(j)); err != nil {
				t.Fatal(err)
			}
			break
		}
		if !changed {
			t.Fatal("PG_VERSION not found in the backup's parts")
		}
		dir := filepath.Join(testenv.Dir(t), "data")
		_, err = r.Restore(ctx, dir, backup.Target{Latest: true}, backup.RestoreOptions{RestoreCommand: "false", Parallel: 2})
		t.Logf("Restore: %v", err)
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), "PG_VERSION") || !strings.Contains(err.Error(), "backup_manifest") {
			t.Errorf("Restore of a changed file: %v, want ErrCorrupt naming PG_VERSION and backup_manifest", err)
		}
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("failed restore left %s behind", dir)
		}
	})
}

func flipByte(t *testing.T, file string, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// restoredInstance is an instance for a data directory Restore fills.
func restoredInstance(t *testing.T, dir, addr string) *postgres.Instance {
	inst := postgres.New(postgres.Config{
		Name: "restored", BinDir: testenv.PGBin(t), Dir: dir, Owner: testenv.Owner(t),
		Address: addr, Port: 5432, Superuser: "postgres", Trust: []string{"127.0.0.1", addr},
		Parameters: map[string]string{"shared_buffers": "32MB", "max_connections": "20", "hot_standby": "off"},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = inst.Stop(ctx)
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Owner(t).Chown(dir); err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestRepo_BackupFromStandby takes the backup from a streaming standby (into
// an unencrypted repository): the stop segment is still being written on the
// primary when pg_basebackup ends, so Backup must have it switched and wait
// for it to be archived.
func TestRepo_BackupFromStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	repo := fileRepo(t, "orders", nil)
	r := repo.open(t)
	src := startCluster(t, repo, nil)

	addr := src.net + ".2"
	standby := postgres.New(postgres.Config{
		Name: "standby", BinDir: testenv.PGBin(t), Dir: filepath.Join(testenv.Dir(t), "standby"), Owner: testenv.Owner(t),
		Address: addr, Port: 5432, Superuser: "postgres", ReplicationUser: "replicator",
		Trust: []string{"127.0.0.1", addr}, Parameters: map[string]string{"shared_buffers": "32MB", "max_connections": "20"},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = standby.Stop(ctx)
	})
	up := postgres.Upstream{Host: src.addr, Port: 5432}
	if err := standby.BaseBackup(ctx, up); err != nil {
		t.Fatal(err)
	}
	if err := standby.WriteConfig(postgres.Settings{AppName: "standby", Upstream: &up}); err != nil {
		t.Fatal(err)
	}
	if err := standby.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Written after the standby's own base backup switched segments: the
	// segment holding the backup's stop point is still open on the primary.
	src.exec(t, "CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 100)")
	lsn, _ := lifeline.ParseLSN(src.query(t, "SELECT pg_current_wal_lsn()::text"))
	if err := standby.WaitReplay(ctx, lsn); err != nil {
		t.Fatal(err)
	}

	switches := 0
	info, err := r.Backup(ctx, backup.Source{BinDir: testenv.PGBin(t), Owner: testenv.Owner(t), Host: addr, Port: 5432, User: "replicator", Node: "eu-west/b"},
		backup.BackupOptions{SwitchWAL: func(ctx context.Context) error { switches++; return src.switchWAL(ctx) }})
	if err != nil {
		t.Fatal(err)
	}
	if info.From != "standby" || info.Node != "eu-west/b" || info.Encrypted || switches == 0 {
		t.Errorf("backup from %s of node %s, encrypted %v, %d WAL switches; want standby, eu-west/b, unencrypted, at least one switch",
			info.From, info.Node, info.Encrypted, switches)
	}
	src.exec(t, "INSERT INTO t SELECT generate_series(101, 300)")
	src.archiveAll(t)

	res, err := r.Verify(ctx, filepath.Join(testenv.Dir(t), "scratch"), verifyOpts(t, repo, src.net+".3", backup.Target{}))
	if err != nil {
		t.Fatalf("Verify: %v\n%s", err, res.Log)
	}
	if got := rows(t, res, "t"); got != 300 || res.Restore.Backup.ID != info.ID {
		t.Errorf("restored %d rows from %s, want 300 from %s", got, res.Restore.Backup.ID, info.ID)
	}
}
