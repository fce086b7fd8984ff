package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ClusterState is pg_controldata's "Database cluster state".
func (i *Instance) ClusterState(ctx context.Context) (string, error) {
	out, err := i.command(ctx, nil, "pg_controldata", "-D", i.DataDir()).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("pg_controldata %s: %w: %s", i.cfg.Name, err, lastLines(out, 5))
	}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "Database cluster state" {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("pg_controldata %s: no cluster state", i.cfg.Name)
}

// WasPrimary reports whether the data directory was last run as a primary
// (not in recovery): such a server may hold WAL the new primary never saw
// and must be rewound before it can follow it.
func (i *Instance) WasPrimary(ctx context.Context) (bool, error) {
	st, err := i.ClusterState(ctx)
	if err != nil {
		return false, err
	}
	switch st {
	case "in production", "shut down", "shutting down", "in crash recovery":
		return true, nil
	}
	return false, nil
}

// Rewind makes the stopped data directory a copy of the source server's
// timeline with pg_rewind, so it can follow the source as a standby.
func (i *Instance) Rewind(ctx context.Context, host string, port int) error {
	if i.Running() {
		return fmt.Errorf("rewind %s: the server is running", i.cfg.Name)
	}
	name := i.serverName(host, port)
	src := i.superuser().Conninfo(host, port, name, "postgres")
	// A just-promoted source shows its new timeline in pg_control only after
	// a checkpoint; pg_rewind reads it from there.
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cfg, err := i.superuser().ConnConfig(host, port, name, "postgres")
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(cctx, cfg)
	if err != nil {
		return fmt.Errorf("rewind %s: connect to source %s:%d: %w", i.cfg.Name, host, port, err)
	}
	_, err = conn.Exec(cctx, "CHECKPOINT")
	conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("rewind %s: checkpoint on source: %w", i.cfg.Name, err)
	}
	i.log.Info("pg_rewind", "source", host+":"+strconv.Itoa(port))
	start := time.Now()
	if err := i.run(ctx, nil, "pg_rewind", "--target-pgdata", i.DataDir(), "--source-server", src); err != nil {
		return fmt.Errorf("rewind %s: %w", i.cfg.Name, err)
	}
	i.log.Info("pg_rewind done", "seconds", time.Since(start).Seconds())
	return nil
}

// KnownTimeline is the newest timeline whose history this server holds in
// pg_wal (1 when none): the one a promotion branches from, as PostgreSQL
// itself looks there first. A standby's reported timeline can lag it (the
// last restartpoint's, while nothing streams).
func (i *Instance) KnownTimeline() (uint32, error) {
	entries, err := os.ReadDir(filepath.Join(i.DataDir(), "pg_wal"))
	if err != nil {
		return 0, fmt.Errorf("timelines of %s: %w", i.cfg.Name, err)
	}
	newest := uint32(1)
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".history")
		if !ok || len(name) != 8 {
			continue
		}
		if tli, err := strconv.ParseUint(name, 16, 32); err == nil && uint32(tli) > newest {
			newest = uint32(tli)
		}
	}
	return newest, nil
}
