package e2e_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/local"
)

// TestSecrets runs a topology whose spec has passwords and a backup key and
// looks for each of them, as it is and in base64, where none may be: a
// restored base backup, every log, status --json, every key and value in
// etcd, and the command line of every process on the machine. The services
// run as their own role, with none of the agent's secrets in their
// environment; the data and the repository are the owner's only.
func TestSecrets(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	random := func() string {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}
	password, replPassword, backupKey := "pw-"+random(), "repl-"+random(), "key-"+random()
	t.Setenv("LL_SECRETS_PASSWORD", password)
	t.Setenv("LL_SECRETS_BACKUP_KEY", backupKey)
	replFile := filepath.Join(testenv.Dir(t), "repl.pw")
	if err := os.WriteFile(replFile, []byte(replPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	specFile := topotest.Example(t, "pilot-light",
		`database: {sync: "ANY 1"}`, `database: {sync: "ANY 1", password: "env:LL_SECRETS_PASSWORD", replication-password: "file:`+replFile+`"}`,
		`retention: 7d}`, `retention: 7d, key: "env:LL_SECRETS_BACKUP_KEY"}`)
	u := topotest.Start(t, specFile, filepath.Join(testenv.Dir(t), "data"))
	w := u.WaitHealthy(t, time.Minute).Workloads[0]

	// Data through the writer endpoint and the services, then the backup
	// the controller takes at once.
	db, err := pgx.Connect(ctx, u.DSN(w.Writer)+" password="+password)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Exec(ctx, "CREATE TABLE secrets_probe (id int)")
	db.Close(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitBackup(t, u, w)

	secrets := map[string][]byte{}
	for name, s := range map[string]string{"password": password, "replication password": replPassword, "backup key": backupKey} {
		secrets[name] = []byte(s)
		secrets[name+" (base64)"] = []byte(base64.StdEncoding.EncodeToString([]byte(s)))
	}
	find := func(where string, b []byte) {
		t.Helper()
		for name, s := range secrets {
			if bytes.Contains(b, s) {
				t.Errorf("the %s is in %s", name, where)
			}
		}
	}
	scanTree := func(root string, keep func(path string) bool) int {
		t.Helper()
		n := 0
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !d.Type().IsRegular() || !keep(path) {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			n++
			find(path, b)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("base backup", func(t *testing.T) {
		into := filepath.Join(testenv.Dir(t), "restored")
		lifeline(t, u, "restore", "--latest", "--into", into)
		if n := scanTree(into, func(string) bool { return true }); n < 100 {
			t.Errorf("the restored backup has %d files", n)
		}
	})
	t.Run("logs", func(t *testing.T) {
		logs := func(p string) bool { return strings.HasSuffix(p, ".log") }
		if n := scanTree(u.DataDir, logs); n < 10 {
			t.Errorf("only %d logs", n)
		}
		find("up's output", []byte(u.Output()))
	})
	t.Run("status", func(t *testing.T) {
		find("status --json", []byte(lifeline(t, u, "status", "--json")))
		find("status", []byte(lifeline(t, u, "status")))
	})
	t.Run("etcd", func(t *testing.T) {
		top, err := local.LoadTopology(u.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		sec, err := agent.LoadSecurity(top, u.DataDir, certs.Operator)
		if err != nil {
			t.Fatal(err)
		}
		s, err := sec.ConnectStore(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		resp, err := s.Client().Get(ctx, "", clientv3.WithFromKey())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) < 10 {
			t.Errorf("etcd holds %d keys", len(resp.Kvs))
		}
		for _, kv := range resp.Kvs {
			find("etcd key "+string(kv.Key), append(kv.Key, kv.Value...))
		}
	})
	t.Run("command lines", func(t *testing.T) {
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil {
				find(p, b)
			}
		}
	})
	t.Run("services", func(t *testing.T) {
		seen := 0
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			cmdline, err := os.ReadFile(p)
			if err != nil || !bytes.Contains(cmdline, []byte("example-app")) || !bytes.Contains(cmdline, []byte("--listen")) {
				continue
			}
			env, err := os.ReadFile(filepath.Join(filepath.Dir(p), "environ"))
			if err != nil {
				continue
			}
			if !isOurs(filepath.Dir(p), u) {
				continue
			}
			seen++
			find(filepath.Join(filepath.Dir(p), "environ"), env)
			for _, kv := range bytes.Split(env, []byte{0}) {
				if bytes.HasPrefix(kv, []byte("LL_SECRETS_")) {
					t.Errorf("a service has the agent's %s", bytes.SplitN(kv, []byte("="), 2)[0])
				}
				if dsn, ok := bytes.CutPrefix(kv, []byte("LIFELINE_DATABASE=")); ok && !bytes.Contains(dsn, []byte("user='app_orders'")) {
					t.Errorf("a service connects as another role than its own: %s", bytes.Split(dsn, []byte(" password="))[0])
				}
			}
		}
		if seen == 0 {
			t.Error("no service instance of this topology found")
		}
		// Its role is not the superuser. (A connection of its own: the
		// writer endpoint closes its connections when its health checks
		// flap on a loaded machine.)
		conn, err := pgx.Connect(ctx, u.DSN(w.Writer)+" password="+password)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var super bool
		if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = 'app_orders'").Scan(&super); err != nil || super {
			t.Errorf("the services' role: superuser %v, %v", super, err)
		}
	})
	t.Run("modes", func(t *testing.T) {
		check := func(path string, want os.FileMode) {
			t.Helper()
			st, err := os.Stat(path)
			if err != nil {
				t.Error(err)
				return
			}
			if st.Mode().Perm()&^want != 0 {
				t.Errorf("%s: mode %v, want at most %v", path, st.Mode().Perm(), want)
			}
		}
		pgdata, _ := filepath.Glob(filepath.Join(u.DataDir, "nodes", "*", "*", "orders", "data"))
		for _, d := range pgdata {
			check(d, 0o700)
			check(filepath.Dir(d), 0o700) // the instance's: its log, its password file
		}
		keys, _ := filepath.Glob(filepath.Join(certs.Dir(u.DataDir), "*.key"))
		for _, k := range keys {
			check(k, 0o600)
		}
		logs, _ := filepath.Glob(filepath.Join(u.DataDir, "logs", "*.log"))
		for _, l := range logs {
			check(l, 0o600)
		}
		repo := filepath.Join(u.DataDir, "backups", "eu-west")
		check(repo, 0o700)
		n := 0
		_ = filepath.WalkDir(repo, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				n++
				check(path, 0o600)
			} else if err == nil {
				check(path, 0o700)
			}
			return err
		})
		if n == 0 || len(pgdata) == 0 || len(keys) == 0 {
			t.Errorf("found %d repository objects, %d data directories, %d keys", n, len(pgdata), len(keys))
		}
	})
}

// isOurs reports whether the process in procDir belongs to u's topology:
// its parent is one of its agents.
func isOurs(procDir string, u *topotest.Up) bool {
	st, err := os.ReadFile(filepath.Join(procDir, "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ppid ...
	fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+1:]))
	if len(fields) < 2 {
		return false
	}
	ppid, _ := strconv.Atoi(fields[1])
	parent, err := os.ReadFile("/proc/" + strconv.Itoa(ppid) + "/cmdline")
	return err == nil && bytes.Contains(parent, []byte(u.DataDir)) && syscall.Kill(ppid, 0) == nil
}
