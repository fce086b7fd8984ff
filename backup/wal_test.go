package backup_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/objstore"
)

// segment is the content of a 16 MiB WAL segment numbered seg: a first page
// header that matches its name, then random bytes.
func segment(seed uint64, seg uint64) []byte {
	const size = 16 << 20
	b := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seg)})
	_, _ = rng.Read(b)
	binary.LittleEndian.PutUint16(b[0:], 0xD110)
	binary.LittleEndian.PutUint16(b[2:], 0x0002)
	binary.LittleEndian.PutUint32(b[4:], 1)
	binary.LittleEndian.PutUint64(b[8:], seg*size)
	binary.LittleEndian.PutUint32(b[32:], size)
	binary.LittleEndian.PutUint32(b[36:], 8192)
	return b
}

func writeSegment(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRepo_WAL(t *testing.T) {
	s3 := newS3(t)
	for _, kind := range []string{"file", "s3"} {
		t.Run(kind, func(t *testing.T) {
			spec := s3.repo(t, "orders", testKey)
			if kind == "file" {
				spec = fileRepo(t, "orders", testKey)
			}
			testWAL(t, spec)
		})
	}
}

func testWAL(t *testing.T, spec repoSpec) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := spec.open(t)
	dir := t.TempDir()
	const name = "000000010000000000000003"
	seg := segment(1, 3)

	t.Run("push twice", func(t *testing.T) {
		path := writeSegment(t, dir, name, seg)
		if err := r.PushWAL(ctx, path); err != nil {
			t.Fatal(err)
		}
		if err := r.PushWAL(ctx, path); err != nil {
			t.Errorf("second push of the same segment: %v", err)
		}
	})

	t.Run("push other content", func(t *testing.T) {
		other := segment(2, 3)
		err := r.PushWAL(ctx, writeSegment(t, t.TempDir(), name, other))
		if !errors.Is(err, backup.ErrConflict) || !strings.Contains(err.Error(), "orders/wal/"+name) || backup.PushExitCode(err) == 0 {
			t.Fatalf("push of a different segment under the same name: %v, want ErrConflict naming the object", err)
		}
		// Nothing was overwritten.
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := r.FetchWAL(ctx, name, dest); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, seg) {
			t.Errorf("the archived segment changed")
		}
	})

	t.Run("refuses what is not this segment", func(t *testing.T) {
		for _, tc := range []struct {
			name string
			data []byte
		}{
			{"000000010000000000000004", seg},                           // a recycled segment's old header
			{"000000010000000000000005", segment(1, 5)[:1<<20+1]},       // truncated
			{"00000001000000000000000X", segment(1, 5)},                 // not a WAL name
			{"000000010000000000000006.tmp", segment(1, 6)},             // not a WAL name
			{"000000010000000000000007.partial", segment(1, 8)[:4<<20]}, // header says 16 MiB
		} {
			if err := r.PushWAL(ctx, writeSegment(t, t.TempDir(), tc.name, tc.data)); err == nil {
				t.Errorf("PushWAL(%s) accepted", tc.name)
			}
		}
		if err := r.PushWAL(ctx, "/nonexistent/000000010000000000000009"); err == nil {
			t.Errorf("PushWAL of a missing file succeeded")
		}
	})

	t.Run("history and partial files", func(t *testing.T) {
		hist := writeSegment(t, t.TempDir(), "00000002.history", []byte("1\t0/3000060\tno recovery target specified\n"))
		if err := r.PushWAL(ctx, hist); err != nil {
			t.Fatal(err)
		}
		partial := writeSegment(t, t.TempDir(), "000000010000000000000004.partial", segment(3, 4))
		if err := r.PushWAL(ctx, partial); err != nil {
			t.Fatal(err)
		}
		dest := filepath.Join(t.TempDir(), "RECOVERYHISTORY")
		if err := r.FetchWAL(ctx, "00000002.history", dest); err != nil {
			t.Fatal(err)
		}
		pgwal := t.TempDir()
		got, err := r.FetchHistoriesAfter(ctx, 1, pgwal)
		if err != nil || len(got) != 1 || got[0] != filepath.Join(pgwal, "00000002.history") {
			t.Fatalf("FetchHistoriesAfter(1) = %v, %v; want %s/00000002.history", got, err, pgwal)
		}
		if b, err := os.ReadFile(got[0]); err != nil || !strings.HasPrefix(string(b), "1\t0/3000060") {
			t.Errorf("fetched history: %q %v", b, err)
		}
		if got, err := r.FetchHistoriesAfter(ctx, 2, pgwal); err != nil || len(got) != 0 {
			t.Errorf("FetchHistoriesAfter(2) = %v, %v; want none", got, err)
		}
	})

	t.Run("fetch the end of the archive", func(t *testing.T) {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		for _, name := range []string{"000000010000000000000004", "000000020000000000000001", "00000003.history"} {
			err := r.FetchWAL(ctx, name, dest)
			if !errors.Is(err, backup.ErrNotFound) || errors.Is(err, backup.ErrWALGap) || backup.FetchExitCode(err) != 1 {
				t.Errorf("FetchWAL(%s) past the end: %v (exit %d), want ErrNotFound, exit 1", name, err, backup.FetchExitCode(err))
			}
		}
		if _, err := os.Stat(dest); !os.IsNotExist(err) {
			t.Errorf("a failed fetch created %s", dest)
		}
	})

	t.Run("fetch a hole", func(t *testing.T) {
		if err := r.PushWAL(ctx, writeSegment(t, t.TempDir(), "000000010000000000000006", segment(1, 6))); err != nil {
			t.Fatal(err)
		}
		err := r.FetchWAL(ctx, "000000010000000000000005", filepath.Join(t.TempDir(), "x"))
		if !errors.Is(err, backup.ErrWALGap) || !strings.Contains(err.Error(), "000000010000000000000006") || backup.FetchExitCode(err) != backup.FatalExitCode {
			t.Errorf("FetchWAL of a missing segment before an archived one: %v (exit %d), want ErrWALGap", err, backup.FetchExitCode(err))
		}
	})

	t.Run("fetch replaces dest atomically", func(t *testing.T) {
		dest := writeSegment(t, t.TempDir(), "RECOVERYXLOG", []byte("old"))
		if err := r.FetchWAL(ctx, name, dest); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, seg) {
			t.Errorf("dest does not hold the segment")
		}
		entries, _ := os.ReadDir(filepath.Dir(dest))
		if len(entries) != 1 {
			t.Errorf("temporary files left beside dest: %v", entries)
		}
	})

	t.Run("bad names", func(t *testing.T) {
		for _, name := range []string{"../../etc/passwd", "RECOVERYXLOG", ""} {
			if err := r.FetchWAL(ctx, name, filepath.Join(t.TempDir(), "x")); err == nil || errors.Is(err, backup.ErrNotFound) {
				t.Errorf("FetchWAL(%q): %v, want a refusal", name, err)
			}
		}
	})
}

func TestOpen(t *testing.T) {
	ctx := context.Background()
	for _, w := range []string{"", "..", "a/b", "x y"} {
		if _, err := backup.Open(ctx, "mem://", objstore.Options{}, w); err == nil {
			t.Errorf("Open accepted workload %q", w)
		}
	}
}

// TestPushWAL_TornObject: a power loss can leave an archived segment cut
// short or unwritten under its final name; the archiver's retry replaces it
// with the identical local segment, the next segments follow, and every
// segment reads back whole.
func TestPushWAL_TornObject(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	spec := fileRepo(t, "orders", testKey)
	r := spec.open(t)
	dir := t.TempDir()
	names := []string{"000000010000000000000003", "000000010000000000000004", "000000010000000000000005"}
	segs := map[string][]byte{}
	for i, n := range names {
		segs[n] = segment(7, uint64(3+i))
	}
	object := func(name string) string { return filepath.Join(spec.dir, "orders", "wal", name) }
	push := func(name string) {
		t.Helper()
		if err := r.PushWAL(ctx, writeSegment(t, dir, name, segs[name])); err != nil {
			t.Fatalf("push %s: %v", name, err)
		}
	}
	push(names[0])
	for _, size := range []int64{0, 50, 4 << 20} {
		if err := os.Truncate(object(names[0]), size); err != nil {
			t.Fatal(err)
		}
		push(names[0]) // the archiver retries the segment it was pushing
	}
	push(names[1])
	if err := os.WriteFile(object(names[1]), make([]byte, 1<<20), 0o600); err != nil { // blocks never written
		t.Fatal(err)
	}
	push(names[1])
	push(names[2])
	for _, n := range names {
		dest := filepath.Join(t.TempDir(), "RECOVERYXLOG")
		if err := r.FetchWAL(ctx, n, dest); err != nil {
			t.Fatalf("fetch %s: %v", n, err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, segs[n]) {
			t.Errorf("%s reads back other content", n)
		}
	}
}
