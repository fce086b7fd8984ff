package local_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/status"
)

// TestUp_WarmStandby builds the warm-standby example and checks that a
// commit is on a synchronous standby when it returns and reaches every
// cross-region standby; then stops it and brings it back on the same data.
func TestUp_WarmStandby(t *testing.T) {
	specFile := topotest.Example(t, "warm-standby")
	dataDir := filepath.Join(testenv.Dir(t), "data")
	u := topotest.Start(t, specFile, dataDir)
	rep := u.WaitHealthy(t, time.Minute)
	w := rep.Workloads[0]
	roles := topotest.ByRole(w)
	if len(roles["primary"]) != 1 || len(roles["sync-standby"]) != 2 || len(roles["standby"]) != 2 {
		t.Fatalf("roles = %+v", roles)
	}
	for _, n := range roles["standby"] {
		if n.Region != "eu-central" {
			t.Errorf("standby %s/%s is not in the standby region", n.Region, n.Zone)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary := u.Connect(t, ctx, roles["primary"][0])
	if _, err := primary.Exec(ctx, "CREATE TABLE orders (id int PRIMARY KEY, note text)"); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 20; i++ {
		if _, err := primary.Exec(ctx, "INSERT INTO orders VALUES ($1, 'x')", i); err != nil {
			t.Fatal(err)
		}
		// The commit has returned: at least one synchronous standby must
		// already hold its WAL on disk.
		var lsn string
		if err := primary.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsn); err != nil {
			t.Fatal(err)
		}
		commit, _ := lifeline.ParseLSN(lsn)
		held := 0
		for _, n := range roles["sync-standby"] {
			var got string
			if err := u.Connect(t, ctx, n).QueryRow(ctx, "SELECT pg_last_wal_receive_lsn()::text").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if l, _ := lifeline.ParseLSN(got); l >= commit {
				held++
			}
		}
		if held == 0 {
			t.Fatalf("insert %d returned, but no synchronous standby has WAL up to %s", i, lsn)
		}
	}
	// With remote_apply the row is visible on a synchronous standby at once.
	if _, err := primary.Exec(ctx, "SET synchronous_commit = remote_apply; INSERT INTO orders VALUES (21, 'applied')"); err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, n := range roles["sync-standby"] {
		var c int
		if err := u.Connect(t, ctx, n).QueryRow(ctx, "SELECT count(*) FROM orders WHERE id = 21").Scan(&c); err != nil {
			t.Fatal(err)
		}
		seen += c
	}
	if seen == 0 {
		t.Fatal("remote_apply commit returned but no synchronous standby shows the row")
	}
	for _, n := range roles["standby"] {
		waitCount(t, ctx, u, n, 21, time.Minute)
	}

	ids := systemIDs(t, ctx, u, w)
	pids := pidsOf(w)
	if out, err := u.Lifeline("down"); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	<-u.Done
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("process %d still runs after lifeline down", pid)
		}
	}

	// Up again on the same data: same roles, same databases, all rows.
	u2 := topotest.Start(t, specFile, dataDir)
	rep2 := u2.WaitHealthy(t, time.Minute)
	for role, nodes := range topotest.ByRole(rep2.Workloads[0]) {
		if len(nodes) != len(roles[role]) {
			t.Errorf("after restart %d %s nodes, want %d", len(nodes), role, len(roles[role]))
		}
	}
	if got := systemIDs(t, ctx, u2, rep2.Workloads[0]); fmt.Sprint(got) != fmt.Sprint(ids) {
		t.Errorf("databases were re-initialised: system ids %v, before %v", got, ids)
	}
	for _, n := range rep2.Workloads[0].Nodes {
		waitCount(t, ctx, u2, n, 21, time.Minute)
	}
	if strings.Count(readLogs(t, dataDir), "msg=initdb") != 1 {
		t.Errorf("initdb ran more than once")
	}
}

func waitCount(t *testing.T, ctx context.Context, u *topotest.Up, n status.Node, want int, timeout time.Duration) {
	t.Helper()
	conn := u.Connect(t, ctx, n)
	deadline := time.Now().Add(timeout)
	for {
		var c int
		err := conn.QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&c)
		if err == nil && c == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s has %d rows (err %v), want %d", n.Region, n.Zone, c, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func systemIDs(t *testing.T, ctx context.Context, u *topotest.Up, w status.Workload) map[string]int64 {
	t.Helper()
	ids := map[string]int64{}
	for _, n := range w.Nodes {
		var id int64
		if err := u.Connect(t, ctx, n).QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids[n.Region+"/"+n.Zone] = id
	}
	return ids
}

func pidsOf(w status.Workload) []int {
	var pids []int
	for _, n := range w.Nodes {
		pids = append(pids, n.AgentPID, n.PostgresPID)
	}
	return pids
}

func readLogs(t *testing.T, dataDir string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dataDir, "logs", "*.log"))
	var b strings.Builder
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&b, fh)
		fh.Close()
	}
	return b.String()
}

// TestUp_ExampleRoles checks the role of every node for the other examples.
func TestUp_ExampleRoles(t *testing.T) {
	for _, c := range []struct {
		example string
		roles   map[string]int
	}{
		{"pilot-light", map[string]int{"primary": 1, "sync-standby": 1, "standby": 1}},
		{"backup-restore", map[string]int{"primary": 1, "sync-standby": 1}},
		{"active-active", map[string]int{"primary": 1, "sync-standby": 1, "standby": 2}},
	} {
		t.Run(c.example, func(t *testing.T) {
			specFile := topotest.Example(t, c.example)
			u := topotest.Start(t, specFile, filepath.Join(testenv.Dir(t), "data"))
			rep := u.WaitHealthy(t, time.Minute)
			got := map[string]int{}
			for _, n := range rep.Workloads[0].Nodes {
				got[n.Role]++
				if n.Role == "primary" && (n.Region != "eu-west" || n.Zone != "a") {
					t.Errorf("primary is %s/%s, want eu-west/a", n.Region, n.Zone)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.roles) {
				t.Errorf("roles = %v, want %v", got, c.roles)
			}
		})
	}
}

// TestUp_RefusesAnotherSpecsDataDir: a data dir made from one spec is not
// reused for another, and nothing in it is touched.
func TestUp_RefusesAnotherSpecsDataDir(t *testing.T) {
	specFile := topotest.Example(t, "pilot-light")
	other := topotest.Example(t, "backup-restore")
	dataDir := filepath.Join(testenv.Dir(t), "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Claim the directory for the first spec without starting anything.
	if err := os.WriteFile(filepath.Join(dataDir, "topology.fingerprint"), []byte("name=shop mode=local\nregion=elsewhere a@127.0.0.9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{specFile, other} {
		out, err := exec.Command(topotest.Binary(t), "up", "-f", f, "--data-dir", dataDir).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "was made from another spec") {
			t.Errorf("up on another spec's data dir: err=%v\n%s", err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "nodes")); err == nil {
		t.Error("a refused up created nodes")
	}
}

// TestUp_Passwords: with passwords in the spec, every connection (the
// agents', replication, base backups, the controller's) authenticates with
// scram over TLS, and nothing is trusted.
func TestUp_Passwords(t *testing.T) {
	t.Setenv("LL_TEST_PG_PASSWORD", "s3cret 'quoted'")
	pwFile := filepath.Join(testenv.Dir(t), "repl.pw")
	if err := os.WriteFile(pwFile, []byte("repl-pass\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	specFile := topotest.Example(t, "pilot-light", `database: {sync: "ANY 1"}`,
		`database: {sync: "ANY 1", password: "env:LL_TEST_PG_PASSWORD", replication-password: "file:`+pwFile+`"}`)
	u := topotest.Start(t, specFile, filepath.Join(testenv.Dir(t), "data"))
	rep := u.WaitHealthy(t, time.Minute)
	p := topotest.ByRole(rep.Workloads[0])["primary"][0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, u.NodeDSN(p)); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to the primary without a password")
	}
	conn, err := pgx.Connect(ctx, u.NodeDSN(p)+" password='s3cret \\'quoted\\''")
	if err != nil {
		t.Fatalf("with the password: %v", err)
	}
	defer conn.Close(ctx)
	var types, methods string
	if err := conn.QueryRow(ctx, "SELECT string_agg(DISTINCT type, ','), string_agg(DISTINCT auth_method, ',') FROM pg_hba_file_rules").Scan(&types, &methods); err != nil {
		t.Fatal(err)
	}
	if types != "hostssl" || methods != "scram-sha-256" {
		t.Errorf("pg_hba rules of types %q and methods %q, want only hostssl and scram-sha-256", types, methods)
	}
}
