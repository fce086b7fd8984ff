// Package sidecopy builds a side copy of a workload's database at a point
// in time from a region's repository, and starts it as a side instance:
// the answer to a bad DELETE, or a look at the data as it was. `lifeline
// restore` runs it on the operator's machine; the API's restores route on
// an agent.
//
// A side instance never archives into a repository and runs with
// hot_standby off: it accepts connections only once recovery has reached
// its target and promoted, so nobody reads the backup's end point and
// takes it for the target.
package sidecopy

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/postgres"
)

// Restore builds the data directory into (empty or absent) from region's
// repository at target: the newest backup that ends before it, and the
// WAL up to it (replayed when the copy starts). It returns the
// restore_command the copy fetches that WAL with.
func Restore(ctx context.Context, b *controller.Backups, w *lifeline.Workload, region string, target backup.Target, into string) (*backup.RestoreResult, string, error) {
	repo, err := backup.OpenRegion(ctx, w, region, b.DataDir)
	if err != nil {
		return nil, "", err
	}
	defer repo.Close()
	restoreCmd, err := b.RestoreCommand(w, region, filepath.Join(b.DataDir, "scratch"))
	if err != nil {
		return nil, "", err
	}
	res, err := repo.Restore(ctx, into, target, backup.RestoreOptions{RestoreCommand: restoreCmd, Owner: b.Owner})
	return res, restoreCmd, err
}

// Start starts the restored data directory into on host:port (trusting
// connections from host and from 127.0.0.1, where a connection on the
// loopback comes from) with parameters, its log next to it, and waits
// until recovery has reached its target and the copy accepts connections
// (up to 30 minutes).
func Start(ctx context.Context, b *controller.Backups, w *lifeline.Workload, into, restoreCmd, host string, port int, parameters map[string]string) (*postgres.Instance, error) {
	pg := postgres.New(postgres.Config{
		Name: "side copy", BinDir: b.PGBin, Dir: filepath.Dir(into), Data: into, Owner: b.Owner, Address: host, Port: port,
		Superuser: w.Database.Superuser, ReplicationUser: w.Database.ReplicationUser,
		Trust:      trusted(host),
		Parameters: parameters,
	})
	extra := map[string]string{"archive_mode": "off", "hot_standby": "off", "restore_command": restoreCmd}
	if err := pg.WriteConfig(postgres.Settings{AppName: "side_copy", Extra: extra}); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	err := pg.Start(sctx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("start the side instance: %w (log: %s)", err, pg.LogFile())
	}
	st, err := pg.Status(ctx)
	if err == nil && st.InRecovery {
		err = fmt.Errorf("still in recovery after start (log: %s)", pg.LogFile())
	}
	if err != nil {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = pg.Stop(stopCtx)
		return nil, fmt.Errorf("side instance: %w", err)
	}
	return pg, nil
}

// Runner makes side copies on one host: an agent's, for the API.
type Runner struct {
	B *controller.Backups
	// Host is the address side instances listen on (and trust).
	Host string
	// Parameters size the side instances.
	Parameters map[string]string
}

// Restore implements api.SideCopies.
func (r *Runner) Restore(ctx context.Context, w *lifeline.Workload, region string, target backup.Target, into string) (*backup.RestoreResult, string, error) {
	return Restore(ctx, r.B, w, region, target, into)
}

// Start implements api.SideCopies: the copy on a free port of Host.
func (r *Runner) Start(ctx context.Context, w *lifeline.Workload, into, restoreCmd string) (string, func(context.Context) error, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(r.Host, "0"))
	if err != nil {
		return "", nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pg, err := Start(ctx, r.B, w, into, restoreCmd, r.Host, port, r.Parameters)
	if err != nil {
		return "", nil, err
	}
	return net.JoinHostPort(r.Host, strconv.Itoa(port)), pg.Stop, nil
}

func trusted(host string) []string {
	if host == "127.0.0.1" {
		return []string{host}
	}
	return []string{host, "127.0.0.1"}
}
