package objstore_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/objstore"
)

// testPutIfAbsentTorn: what a crash can leave under a name (nothing
// readable, zeros, or a cut copy of the same content) is replaced by the
// intact content; a cut copy of other content is still a conflict.
func testPutIfAbsentTorn(t *testing.T, newRepo func(t *testing.T) string) {
	ctx := context.Background()
	const H = objstore.HeaderLen
	seg, other := randomBytes(20, 1<<20), randomBytes(21, 1<<20)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := open(t, newRepo(t), m.opts)
			const key = "wal/000000010000000000000005"
			if _, err := s.PutIfAbsent(ctx, key, bytes.NewReader(seg)); err != nil {
				t.Fatal(err)
			}
			whole := rawRead(t, s, key)
			if _, err := s.PutIfAbsent(ctx, "wal/other", bytes.NewReader(other)); err != nil {
				t.Fatal(err)
			}
			otherWhole := rawRead(t, s, "wal/other")
			damaged := func(b []byte) []byte {
				b = bytes.Clone(b)
				b[len(b)-1] ^= 0xff
				return b
			}
			for _, c := range []struct {
				name    string
				stored  []byte
				replace bool
			}{
				{"empty", nil, true},
				{"part of the header", whole[:40], true},
				{"zeros", make([]byte, len(whole)), true},
				{"cut in the payload", whole[:H+len(whole)/3], true},
				{"damaged payload", damaged(whole), true},
				{"other content cut", otherWhole[:H+100], false},
				{"other content whole", otherWhole, false},
			} {
				t.Run(c.name, func(t *testing.T) {
					rawWrite(t, s, key, c.stored)
					_, err := s.PutIfAbsent(ctx, key, bytes.NewReader(seg))
					if !c.replace {
						wantErr(t, err, objstore.ErrConflict, key)
						if !bytes.Equal(rawRead(t, s, key), c.stored) {
							t.Error("a conflicting object was overwritten")
						}
						return
					}
					if err != nil {
						t.Fatalf("PutIfAbsent over a torn object: %v", err)
					}
					if got := mustRead(t, s, key); !bytes.Equal(got, seg) {
						t.Errorf("after the replacement Get returns %d bytes, want the segment", len(got))
					}
				})
			}
		})
	}
}

// TestFileStore_Modes: objects are 0600 and directories 0700; under root,
// both belong to the owner of the repository's directory.
func TestFileStore_Modes(t *testing.T) {
	root := filepath.Join(t.TempDir(), "repo")
	if err := os.Mkdir(root, 0o700); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	chown := os.Geteuid() == 0
	if chown {
		if err := os.Chown(root, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, "file://"+root, objstore.Options{})
	put(t, s, "orders/wal/000000010000000000000001", []byte("segment"))
	if _, err := s.PutIfAbsent(context.Background(), "orders/base/b1/part-1", bytes.NewReader([]byte("part"))); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		mode os.FileMode
	}{
		{"orders", 0o700 | os.ModeDir}, {"orders/wal", 0o700 | os.ModeDir}, {"orders/base/b1", 0o700 | os.ModeDir},
		{"orders/wal/000000010000000000000001", 0o600}, {"orders/base/b1/part-1", 0o600},
	} {
		st, err := os.Stat(filepath.Join(root, c.path))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != c.mode {
			t.Errorf("%s: mode %v, want %v", c.path, st.Mode(), c.mode)
		}
		if uid := st.Sys().(*syscall.Stat_t).Uid; chown && uid != nobody {
			t.Errorf("%s: owner %d, want the repository's (%d)", c.path, uid, nobody)
		}
	}
}

const killHelperEnv = "LIFELINE_OBJSTORE_KILL_HELPER"

// TestFileStore_KilledBeforeRename: a writer killed (SIGKILL) after writing
// and syncing an object but before renaming it into place leaves no object;
// pushing it again succeeds, the archive goes on, and no segment is lost.
func TestFileStore_KilledBeforeRename(t *testing.T) {
	if os.Getenv(killHelperEnv) != "" {
		t.Skip("helper process")
	}
	ctx := context.Background()
	repo := "file://" + filepath.Join(t.TempDir(), "repo")
	s := open(t, repo, objstore.Options{Key: keyA})
	segs := [][]byte{randomBytes(30, 1<<20), randomBytes(31, 1<<20), randomBytes(32, 1<<20)}
	key := func(i int) string { return fmt.Sprintf("wal/00000001000000000000000%d", i+1) }
	if _, err := s.PutIfAbsent(ctx, key(0), bytes.NewReader(segs[0])); err != nil {
		t.Fatal(err)
	}

	// The second push runs in a process that stops just before the rename
	// and is killed there.
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFileStore_KillHelper$")
	cmd.Env = append(os.Environ(), killHelperEnv+"="+repo+" "+key(1))
	cmd.Stdin = bytes.NewReader(segs[1])
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if tmp, ok := strings.CutPrefix(sc.Text(), "before-rename "); ok {
				ready <- tmp
				return
			}
		}
		close(ready)
	}()
	var tmp string
	select {
	case tmp = <-ready:
	case <-time.After(time.Minute):
		t.Fatal("the helper did not reach the rename")
	}
	if tmp == "" {
		t.Fatal("the helper exited before the rename")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if _, err := os.Stat(tmp); err != nil {
		t.Fatalf("the killed write left no temporary file: %v", err)
	}
	if _, err := s.Stat(ctx, key(1)); err == nil {
		t.Fatal("the killed write's object exists")
	}

	// The archiver retries, then goes on.
	for i := 1; i < len(segs); i++ {
		if _, err := s.PutIfAbsent(ctx, key(i), bytes.NewReader(segs[i])); err != nil {
			t.Fatalf("push %s after the kill: %v", key(i), err)
		}
	}
	for i, seg := range segs {
		if got := mustRead(t, s, key(i)); !bytes.Equal(got, seg) {
			t.Errorf("%s: read back %d bytes, want the pushed segment", key(i), len(got))
		}
	}
	if _, err := os.Stat(tmp); err == nil {
		t.Error("the killed write's temporary file is still there after the next write of its object")
	}
}

// TestFileStore_KillHelper is the process TestFileStore_KilledBeforeRename
// kills: it pushes stdin and waits before the rename.
func TestFileStore_KillHelper(t *testing.T) {
	arg := os.Getenv(killHelperEnv)
	if arg == "" {
		t.Skip("run by TestFileStore_KilledBeforeRename")
	}
	repo, key, _ := strings.Cut(arg, " ")
	s := open(t, repo, objstore.Options{Key: keyA})
	objstore.SetBeforeRename(func(tmp string) {
		fmt.Println("before-rename " + tmp)
		select {} // killed here
	})
	if _, err := s.PutIfAbsent(context.Background(), key, os.Stdin); err != nil {
		t.Fatal(err)
	}
}

// TestFileStore_StaleTemps: a write-once object, once written, removes the
// temporary files other writes of it left, and no other object's.
func TestFileStore_StaleTemps(t *testing.T) {
	root := filepath.Join(t.TempDir(), "repo")
	s := open(t, "file://"+root, objstore.Options{})
	dir := filepath.Join(root, "wal")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	const seg = "000000010000000000000004"
	stale := filepath.Join(dir, seg+".18f3a2b4c5d6e7f8.tmp")
	other := filepath.Join(dir, seg+".00000028.backup.18f3a2b4c5d6e7f9.tmp") // another object's write under way
	for _, p := range []string{stale, other} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.PutIfAbsent(context.Background(), "wal/"+seg, bytes.NewReader([]byte("segment"))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("the object's stale temporary file is still there")
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another object's temporary file was removed: %v", err)
	}
}
