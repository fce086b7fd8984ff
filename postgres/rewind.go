package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline"
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

// RewindStats says what a rewind did: where the two servers' histories
// diverged, and how much it copied.
type RewindStats struct {
	DivergedAt  lifeline.LSN
	Timeline    uint32 // the timeline the target was on at the divergence
	CopiedBytes int64
}

var (
	divergedRe = regexp.MustCompile(`servers diverged at WAL location ([0-9A-Fa-f]+/[0-9A-Fa-f]+) on timeline (\d+)`)
	copiedRe   = regexp.MustCompile(`(\d+)/(\d+) kB \(\d+%\) copied`)
)

// Rewind makes the stopped data directory a copy of the source server's
// timeline with pg_rewind, so it can follow the source as a standby. A dry
// run first finds where the histories diverged; before, when not nil, is
// called with that (e.g. to keep the WAL written after it) before anything
// is changed.
func (i *Instance) Rewind(ctx context.Context, host string, port int, before func(RewindStats) error) (RewindStats, error) {
	var stats RewindStats
	if i.Running() {
		return stats, fmt.Errorf("rewind %s: the server is running", i.cfg.Name)
	}
	name := i.serverName(host, port)
	src := i.superuser().Conninfo(host, port, name, "postgres")
	// A just-promoted source shows its new timeline in pg_control only after
	// a checkpoint; pg_rewind reads it from there.
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := i.checkpointOn(cctx, host, port, name); err != nil {
		return stats, fmt.Errorf("rewind %s: checkpoint on source: %w", i.cfg.Name, err)
	}
	i.log.Info("pg_rewind", "source", host+":"+strconv.Itoa(port))
	start := time.Now()
	// A dry run refuses a target that was not shut down cleanly (it does
	// not run the crash recovery the real run would): run it first, as
	// pg_rewind itself does, in single-user mode.
	if st, err := i.ClusterState(ctx); err == nil && st != "shut down" && st != "shut down in recovery" {
		out, err := i.command(ctx, nil, "postgres", "--single", "-F", "-c", "exit_on_error=false", "-D", i.DataDir(), "template1").CombinedOutput()
		if err != nil {
			return stats, fmt.Errorf("rewind %s: crash recovery before the rewind: %w: %s", i.cfg.Name, err, lastLines(out, 10))
		}
	}
	out, err := i.command(ctx, nil, "pg_rewind", "--dry-run", "--target-pgdata", i.DataDir(), "--source-server", src).CombinedOutput()
	if err != nil {
		return stats, fmt.Errorf("rewind %s: pg_rewind --dry-run: %w: %s", i.cfg.Name, err, lastLines(out, 15))
	}
	if m := divergedRe.FindSubmatch(out); m != nil {
		stats.DivergedAt, _ = lifeline.ParseLSN(string(m[1]))
		tli, _ := strconv.ParseUint(string(m[2]), 10, 32)
		stats.Timeline = uint32(tli)
	}
	if before != nil && stats.DivergedAt != 0 {
		if err := before(stats); err != nil {
			return stats, fmt.Errorf("rewind %s: %w", i.cfg.Name, err)
		}
	}
	out, err = i.command(ctx, nil, "pg_rewind", "--progress", "--target-pgdata", i.DataDir(), "--source-server", src).CombinedOutput()
	if err != nil {
		return stats, fmt.Errorf("rewind %s: pg_rewind: %w: %s", i.cfg.Name, err, lastLines(out, 15))
	}
	if all := copiedRe.FindAllSubmatch(out, -1); len(all) > 0 {
		kb, _ := strconv.ParseInt(string(all[len(all)-1][1]), 10, 64)
		stats.CopiedBytes = kb * 1024
	}
	i.log.Info("pg_rewind done", "seconds", time.Since(start).Seconds(), "copied_bytes", stats.CopiedBytes, "diverged_at", stats.DivergedAt.String())
	// The rewound server is consistent only once it has replayed past the
	// source's insert position at the end of the copy (pg_control's backup
	// end location). On an idle source that position can be the start of a
	// segment just switched to (archive_timeout), where no record is written
	// until a client writes: the server would stream and never open. A
	// checkpoint on the source writes (and flushes) one record past it.
	nctx, ncancel := context.WithTimeout(ctx, time.Minute)
	defer ncancel()
	if err := i.checkpointOn(nctx, host, port, name); err != nil {
		i.log.Warn("rewind: no checkpoint on the source after the copy; the server opens for reads at the source's next write", "err", err)
	}
	return stats, nil
}

// checkpointOn runs CHECKPOINT on the server at host:port.
func (i *Instance) checkpointOn(ctx context.Context, host string, port int, name string) error {
	cfg, err := i.superuser().ConnConfig(host, port, name, "postgres")
	if err != nil {
		return err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect to %s:%d: %w", host, port, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return err
}

// Size is the data directory's size in bytes.
func (i *Instance) Size() int64 {
	var n int64
	_ = filepath.WalkDir(i.DataDir(), func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
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
