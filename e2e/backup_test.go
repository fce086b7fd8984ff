package e2e_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/internal/topotest"
	"github.com/lifeline-dr/lifeline/status"
)

// side runs `lifeline restore ... --start` and returns a connection to the
// side instance; the process is stopped (SIGINT, by PID) at cleanup.
func side(t *testing.T, u *topotest.Up, args ...string) *pgx.Conn {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(topotest.Binary(t), append([]string{"restore", "--start", "--port", fmt.Sprint(port), "--data-dir", u.DataDir}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "side instance running") {
				ready <- sc.Text()
			}
		}
		cmd.Wait()
		close(done)
	}()
	select {
	case <-ready:
	case <-done:
		t.Fatalf("restore %v exited: %s", args, stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("restore %v: no side instance after 3m: %s", args, stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// waitBackup waits for the first backup, which the controller takes as soon
// as the primary serves, and returns the workload's state then.
func waitBackup(t *testing.T, u *topotest.Up, w status.Workload) status.Workload {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for w.Backups.Last == nil || w.Backups.Last.ID == "" {
		if time.Now().After(deadline) {
			t.Fatalf("no scheduled backup after 2m: %+v", w.Backups)
		}
		time.Sleep(time.Second)
		w = u.Status(t).Workloads[0]
	}
	return w
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func count(t *testing.T, ctx context.Context, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM orders_pitr").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestBackups: on a running pilot-light topology, a restore to a time
// between two batches of commits holds exactly the first batch; the standby
// region restores from its own copy after the active region's repository
// is gone; the verification drill passes.
func TestBackups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	u := topotest.Start(t, topotest.Example(t, "pilot-light"), filepath.Join(testenv.Dir(t), "data"))
	w := waitBackup(t, u, u.WaitHealthy(t, time.Minute).Workloads[0])
	db, err := pgx.Connect(ctx, u.DSN(w.Writer))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "CREATE TABLE orders_pitr (id int PRIMARY KEY); INSERT INTO orders_pitr SELECT generate_series(1, 500)"); err != nil {
		t.Fatal(err)
	}
	between := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond)
	if _, err := db.Exec(ctx, "INSERT INTO orders_pitr SELECT generate_series(501, 800); DELETE FROM orders_pitr WHERE id <= 100"); err != nil {
		t.Fatal(err)
	}
	var last string
	if err := db.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&last); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	// Wait until the standby region's copy has that WAL segment.
	deadline := time.Now().Add(time.Minute)
	for {
		w = u.Status(t).Workloads[0]
		if len(w.Backups.Copies) == 1 && w.Backups.Copies[0].NewestWAL >= last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the copy to eu-central did not catch up: %+v", w.Backups.Copies)
		}
		time.Sleep(500 * time.Millisecond)
	}

	t.Run("point in time", func(t *testing.T) {
		into := filepath.Join(testenv.Dir(t), "pitr")
		conn := side(t, u, "--into", into, "--to-time", between.Format(time.RFC3339Nano))
		if _, err := os.Stat(filepath.Join(into, "PG_VERSION")); err != nil {
			t.Errorf("--into %s is not the data directory itself (as pg_basebackup -D): %v", into, err)
		}
		if n := count(t, ctx, conn); n != 500 {
			t.Errorf("restored to %s: %d rows, want exactly the 500 committed before", between.Format(time.RFC3339Nano), n)
		}
	})

	t.Run("standby region after the active region's repository is gone", func(t *testing.T) {
		if err := os.RemoveAll(filepath.Join(u.DataDir, "backups", "eu-west")); err != nil {
			t.Fatal(err)
		}
		conn := side(t, u, "--region", "eu-central", "--latest", "--into", filepath.Join(testenv.Dir(t), "latest"))
		if n := count(t, ctx, conn); n != 700 {
			t.Errorf("restored latest from eu-central: %d rows, want 700", n)
		}
	})

	t.Run("verify", func(t *testing.T) {
		out, err := u.Lifeline("backup", "verify", "--region", "eu-central")
		if err != nil || !strings.Contains(out, "PASS: ") {
			t.Fatalf("verify: %v\n%s", err, out)
		}
		if v := u.Status(t).Workloads[0].Backups.Verify; v == nil || !v.Passed || v.Region != "eu-central" {
			t.Errorf("status verify = %+v", v)
		}
	})
}
