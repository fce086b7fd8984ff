package backup_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/objstore"
	"github.com/lifeline-dr/lifeline/postgres"
)

// helperEnv makes the test binary act as `lifeline wal-push` / `wal-fetch`
// (PostgreSQL's archive and restore commands in these tests).
const helperEnv = "LIFELINE_BACKUP_TEST_HELPER"

// helperBin is a copy of the test binary that the postgres OS user can run.
var helperBin string

// hermeticAWS keeps the AWS SDK away from this machine's configuration and
// the EC2 metadata service, in this process and in the helpers.
var hermeticAWS = map[string]string{
	"AWS_EC2_METADATA_DISABLED":   "true",
	"AWS_CONFIG_FILE":             os.DevNull,
	"AWS_SHARED_CREDENTIALS_FILE": os.DevNull,
	// gofakes3 sends no response checksums; the SDK would warn on every Get.
	"AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
}

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Args[1:]))
	}
	for k, v := range hermeticAWS {
		os.Setenv(k, v)
	}
	dir, err := os.MkdirTemp("", "lifeline-backup-bin-")
	if err != nil {
		log.Fatal(err)
	}
	if err := copyExecutable(filepath.Join(dir, "lifeline-test")); err != nil {
		log.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	helperBin = filepath.Join(dir, "lifeline-test")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func copyExecutable(dst string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	in, err := os.Open(self)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// runHelper is wal-push / wal-fetch: args are URL, workload, hex key or "-",
// then %p (push) or %f %p (fetch). Exit codes are the package's.
func runHelper(mode string, args []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fatal := 1
	if mode == "wal-fetch" {
		fatal = backup.FatalExitCode
	}
	if len(args) < 4 {
		fmt.Fprintln(os.Stderr, "lifeline: usage: URL WORKLOAD KEY FILE...")
		return fatal
	}
	var key []byte
	if args[2] != "-" {
		k, err := hex.DecodeString(args[2])
		if err != nil {
			fmt.Fprintln(os.Stderr, "lifeline: key:", err)
			return fatal
		}
		key = k
	}
	r, err := backup.Open(ctx, args[0], objstore.Options{Key: key}, args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "lifeline:", err)
		return fatal
	}
	defer r.Close()
	switch mode {
	case "wal-push":
		err = r.PushWAL(ctx, args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, "lifeline:", err)
		}
		return backup.PushExitCode(err)
	case "wal-fetch":
		if len(args) < 5 {
			return fatal
		}
		err = r.FetchWAL(ctx, args[3], args[4])
		code := backup.FetchExitCode(err)
		if code > 1 {
			fmt.Fprintln(os.Stderr, "lifeline:", err)
		}
		return code
	}
	return fatal
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// repoSpec is how the test helpers reach a repository.
type repoSpec struct {
	url      string
	key      []byte
	workload string
	dir      string // file:// repositories: the directory
}

func (s repoSpec) keyArg() string {
	if s.key == nil {
		return "-"
	}
	return hex.EncodeToString(s.key)
}

func (s repoSpec) command(mode string, args string) string {
	env := helperEnv + "=" + mode
	for k, v := range hermeticAWS {
		env += " " + k + "=" + v
	}
	return fmt.Sprintf("%s %s %s %s %s %s", env, shellQuote(helperBin), shellQuote(s.url), s.workload, s.keyArg(), args)
}

// ArchiveCommand and RestoreCommand are PostgreSQL's commands for the repository.
func (s repoSpec) ArchiveCommand() string { return s.command("wal-push", `"%p"`) }
func (s repoSpec) RestoreCommand() string { return s.command("wal-fetch", `%f "%p"`) }

func (s repoSpec) open(t testing.TB) *backup.Repo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := backup.Open(ctx, s.url, objstore.Options{Key: s.key}, s.workload)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

var testKey = func() []byte { h := sha256.Sum256([]byte("backup test key")); return h[:] }()

// fileRepo makes a file:// repository the postgres OS user can write to (it
// runs archive_command): the caller of a real deployment must arrange the
// same (see Open).
func fileRepo(t testing.TB, workload string, key []byte) repoSpec {
	t.Helper()
	dir := filepath.Join(testenv.Dir(t), "repo")
	if err := os.MkdirAll(filepath.Join(dir, workload, "wal"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := testenv.Owner(t).Chown(dir); err != nil {
		t.Fatal(err)
	}
	return repoSpec{url: "file://" + dir, key: key, workload: workload, dir: dir}
}

// s3Server starts an in-process S3-compatible server on 127.0.0.1.
type s3Server struct {
	backend *s3mem.Backend
	url     string
	n       atomic.Int32
}

func newS3(t testing.TB) *s3Server {
	backend := s3mem.New()
	faker := gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog()))
	ts := httptest.NewUnstartedServer(faker.Server())
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.Start()
	t.Cleanup(ts.Close)
	return &s3Server{backend: backend, url: ts.URL}
}

func (s *s3Server) repo(t testing.TB, workload string, key []byte) repoSpec {
	name := fmt.Sprintf("region-%d", s.n.Add(1))
	if err := s.backend.CreateBucket(name); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	u := fmt.Sprintf("s3://%s/lifeline?endpoint=%s&use_path_style=true&region=us-east-1&anonymous=true",
		name, url.QueryEscape(s.url))
	return repoSpec{url: u, key: key, workload: workload}
}

// cluster is a source PostgreSQL that archives into a repository.
type cluster struct {
	inst *postgres.Instance
	addr string
	net  string
}

func startCluster(t testing.TB, repo repoSpec, params map[string]string) *cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	net := testenv.Subnet(t)
	addr := net + ".1"
	p := map[string]string{"shared_buffers": "32MB", "max_connections": "20"}
	for k, v := range params {
		p[k] = v
	}
	inst := postgres.New(postgres.Config{
		Name: "src", BinDir: testenv.PGBin(t), Dir: filepath.Join(testenv.Dir(t), "src"), Owner: testenv.Owner(t),
		Address: addr, Port: 5432, Superuser: "postgres", ReplicationUser: "replicator",
		Trust: []string{"127.0.0.1", addr}, Parameters: p,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := inst.Stop(ctx); err != nil {
			t.Errorf("stop source: %v", err)
		}
	})
	if err := inst.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	err := inst.WriteConfig(postgres.Settings{AppName: "src", Extra: map[string]string{
		"archive_mode": "on", "archive_command": repo.ArchiveCommand(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := inst.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := inst.EnsureRoles(ctx); err != nil {
		t.Fatal(err)
	}
	return &cluster{inst: inst, addr: addr, net: net}
}

func (c *cluster) source(t testing.TB) backup.Source {
	return backup.Source{BinDir: testenv.PGBin(t), Owner: testenv.Owner(t), Host: c.addr, Port: 5432, User: "replicator", Node: "eu-west/a"}
}

// exec runs SQL statements on the source and returns the first column of
// the last statement's first row as text.
func (c *cluster) query(t testing.TB, sql string, args ...any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := c.inst.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var out *string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&out); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if out == nil {
		return ""
	}
	return *out
}

// exec runs SQL on the source.
func (c *cluster) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := c.inst.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// switchWAL is BackupOptions.SwitchWAL for the source.
func (c *cluster) switchWAL(ctx context.Context) error {
	conn, err := c.inst.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "SELECT pg_switch_wal()")
	return err
}

// archiveAll switches to a new segment and waits until the finished one is
// archived, so that everything committed so far is in the repository.
func (c *cluster) archiveAll(t testing.TB) string {
	t.Helper()
	seg := c.query(t, "SELECT pg_walfile_name(pg_switch_wal())")
	deadline := time.Now().Add(30 * time.Second)
	for {
		last := c.query(t, "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
		if len(last) >= 24 && last[:24] >= seg {
			return seg
		}
		if time.Now().After(deadline) {
			t.Fatalf("segment %s not archived after 30s (last archived %q); see %s", seg, last, c.inst.LogFile())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verifyOpts are VerifyOptions for a repository, on the cluster's subnet.
func verifyOpts(t testing.TB, repo repoSpec, addr string, target backup.Target) backup.VerifyOptions {
	return backup.VerifyOptions{
		RestoreCommand: repo.RestoreCommand(), BinDir: testenv.PGBin(t), Owner: testenv.Owner(t),
		Address: addr, Target: target, Timeout: 90 * time.Second,
	}
}

// rows returns the row count Verify saw for a table of database postgres.
func rows(t testing.TB, res *backup.VerifyResult, table string) int64 {
	t.Helper()
	for _, tc := range res.Tables {
		if tc.Database == "postgres" && tc.Schema == "public" && tc.Table == table {
			return tc.Rows
		}
	}
	t.Fatalf("table %s not in the verify report %+v", table, res.Tables)
	return 0
}

// clone copies repo into a fresh file:// repository.
func clone(t testing.TB, src *backup.Repo, repo repoSpec) (repoSpec, *backup.Repo) {
	t.Helper()
	spec := fileRepo(t, repo.workload, repo.key)
	dst := spec.open(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := src.CopyTo(ctx, dst, backup.CopyOptions{}); err != nil {
		t.Fatalf("clone: %v", err)
	}
	return spec, dst
}
