package postgres_test

import (
	"context"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline/internal/testenv"
	"github.com/lifeline-dr/lifeline/postgres"
)

func newInstance(t *testing.T, dir, addr, name string) *postgres.Instance {
	t.Helper()
	i := postgres.New(postgres.Config{
		Name: name, BinDir: testenv.PGBin(t), Dir: dir, Owner: testenv.Owner(t),
		Address: addr, Port: 5432, Superuser: "postgres", ReplicationUser: "replicator",
		Trust:      []string{"127.0.0.1", addr},
		Parameters: map[string]string{"shared_buffers": "32MB", "max_connections": "20"},
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

func TestInstance_PrimaryStandbyPromote(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := testenv.Dir(t)
	net := testenv.Subnet(t)
	primary := newInstance(t, dir+"/p", net+".1", "p")
	if err := primary.InitDB(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.WriteConfig(postgres.Settings{AppName: "p", SyncStandbyNames: postgres.SyncStandbyNames("ANY 1", []string{"s"})}); err != nil {
		t.Fatal(err)
	}
	if err := primary.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.EnsureReplicationUser(ctx); err != nil {
		t.Fatal(err)
	}
	if err := primary.EnsureSlots(ctx, []string{"s"}); err != nil {
		t.Fatal(err)
	}

	standby := newInstance(t, dir+"/s", net+".2", "s")
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
}
