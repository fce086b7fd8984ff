package postgres_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/postgres"
)

func newInstance(t *testing.T, dir, addr, name string) *postgres.Instance {
	return newInstanceWith(t, dir, addr, name, nil)
}

func newInstanceWith(t *testing.T, dir, addr, name string, params map[string]string) *postgres.Instance {
	t.Helper()
	p := map[string]string{"shared_buffers": "32MB", "max_connections": "20"}
	for k, v := range params {
		p[k] = v
	}
	i := postgres.New(postgres.Config{
		Name: name, BinDir: testenv.PGBin(t), Dir: dir, Owner: testenv.Owner(t),
		Address: addr, Port: 5432, Superuser: "postgres", ReplicationUser: "replicator",
		Trust:      []string{"127.0.0.1", addr},
		Parameters: p,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := i.Stop(ctx); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	return i
}

// pair starts a primary "p" and a synchronous standby "s" streaming from it.
func pair(ctx context.Context, t *testing.T, standbyParams map[string]string) (primary, standby *postgres.Instance) {
	t.Helper()
	dir := testenv.Dir(t)
	net := testenv.Subnet(t)
	primary = newInstance(t, dir+"/p", net+".1", "p")
	if err := primary.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.WriteConfig(postgres.Settings{AppName: "p", SyncStandbyNames: postgres.SyncStandbyNames("ANY 1", []string{"s"})}); err != nil {
		t.Fatal(err)
	}
	if err := primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.EnsureRoles(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.EnsureSlots(ctx, []string{"s"}); err != nil {
		t.Fatal(err)
	}

	standby = newInstanceWith(t, dir+"/s", net+".2", "s", standbyParams)
	up := postgres.Upstream{Host: net + ".1", Port: 5432, Slot: "s"}
	if err := standby.BaseBackup(ctx, up); err != nil {
		t.Fatal(err)
	}
	if err := standby.WriteConfig(postgres.Settings{AppName: "s", Upstream: &up}); err != nil {
		t.Fatal(err)
	}
	if err := standby.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return primary, standby
}

func TestInstance_PrimaryStandbyPromote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	primary, standby := pair(ctx, t, nil)

	conn, err := primary.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// With the standby synchronous, the commit returns only once it has the row.
	if _, err := conn.Exec(ctx, "SET synchronous_commit = remote_apply; CREATE TABLE t (v int); INSERT INTO t VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	sconn, err := standby.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v int
	if err := sconn.QueryRow(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != 42 {
		t.Fatalf("standby: v=%d err=%v", v, err)
	}
	sconn.Close(ctx)

	pst, err := primary.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pst.InRecovery || len(pst.Replicas) != 1 || pst.Replicas[0].Name != "s" || pst.Replicas[0].SyncState != "quorum" {
		t.Fatalf("primary status = %+v", pst)
	}
	sst, err := standby.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !sst.InRecovery || sst.Upstream != "streaming" || sst.Timeline != 1 {
		t.Fatalf("standby status = %+v", sst)
	}

	if err := primary.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	sst, err = standby.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sst.InRecovery || sst.Timeline != 2 {
		t.Fatalf("promoted status = %+v", sst)
	}
	// A retried promotion (the first one's answer lost) finds it done.
	if err := standby.Promote(ctx); err != nil {
		t.Fatalf("promote again: %v", err)
	}
}

// A standby whose upstream has just failed sleeps wal_retrieve_retry_interval
// between attempts, and PostgreSQL 15 sleeps it out even after a promotion
// request taken while an attempt was starting. Promote's wait wakes it from
// that sleep: here the wake-up shows as one more attempt to reach the
// upstream, where there would be none for 10 minutes otherwise.
func TestInstance_PromotionWakesRetrySleep(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	primary, standby := pair(ctx, t, map[string]string{"wal_retrieve_retry_interval": "10min"})
	if err := primary.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	conn, err := standby.Connect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for {
		var sleeping bool
		if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE backend_type = 'startup' AND wait_event = 'RecoveryRetrieveRetryInterval')`).Scan(&sleeping); err != nil {
			t.Fatal(err)
		}
		if sleeping {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the standby never slept to retry its upstream")
		case <-time.After(20 * time.Millisecond):
		}
	}
	attempts := func() int {
		b, err := os.ReadFile(standby.LogFile())
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "could not connect to the primary server")
	}
	before := attempts()
	if done, err := standby.PromotionStep(ctx, conn); err != nil || done {
		t.Fatalf("promotion step on a sleeping standby: done=%v err=%v", done, err)
	}
	for attempts() == before {
		select {
		case <-ctx.Done():
			t.Fatal("the standby slept on: no new attempt to reach its upstream")
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := standby.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.InRecovery || st.Timeline != 2 {
		t.Fatalf("promoted status = %+v", st)
	}
}
