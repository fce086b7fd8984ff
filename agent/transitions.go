package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/store"
)

// demotionFile keeps this node's own record of a clean demotion, next to
// the data directory: it survives an agent restart between the demotion
// and the promotion of the new primary.
func (r *workloadRunner) demotionFile() string {
	return filepath.Join(r.pg.Config().Dir, "demoted.json")
}

// demotion is this node's record of its clean demotion, nil when none.
func (r *workloadRunner) demotion() *lifeline.Demotion {
	b, err := os.ReadFile(r.demotionFile())
	if err != nil {
		return nil
	}
	var d lifeline.Demotion
	if json.Unmarshal(b, &d) != nil {
		return nil
	}
	return &d
}

func (r *workloadRunner) clearDemotion() {
	if err := os.Remove(r.demotionFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
		r.log.Warn("clear the demotion record", "err", err)
	}
}

// demote stops writes cleanly for a switchover: once the archiver has
// caught up (so that the shutdown does not wait for it: the write pause is
// what follows), a fast shutdown (every connected standby receives the WAL
// up to the shutdown checkpoint before the walsenders exit), then the
// checkpoint's location is reported in the workload's state in the same
// write that deletes the primary lease key. Idempotent: a server already
// stopped cleanly is reported again, with its first report's time.
func (r *workloadRunner) demote(ctx context.Context, st lifeline.WorkloadState) error {
	var stopped *stopping
	if r.pg.Running() {
		r.log.Warn("demoting: stopping writes for a switchover")
		// Before the pause: a checkpoint now leaves the shutdown's
		// checkpoint little to write, and an archiver that has caught up
		// leaves the shutdown nothing to wait for.
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := r.pg.Checkpoint(cctx); err != nil {
			r.log.Warn("checkpoint before the switchover", "err", err)
		}
		cancel()
		r.waitArchived(ctx, 3*time.Second)
		stopped = &stopping{done: make(chan struct{})}
		go func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			stopped.err = r.pg.Stop(sctx)
			close(stopped.done)
		}()
	}
	d := r.demotion()
	if d == nil || d.Epoch != st.Epoch || d.Node != r.me.String() {
		// Writes have stopped once the shutdown checkpoint is in
		// pg_control: every backend is gone and the server accepts no
		// connection. It then still ships its last WAL to the standbys
		// and waits for the archiver; the target's replay, which the
		// switchover waits for, covers the first, and nothing needs the
		// second. So the checkpoint is reported at once.
		lsn, tli, err := r.awaitShutdownCheckpoint(ctx, stopped)
		if err != nil {
			return err
		}
		d = &lifeline.Demotion{Node: r.me.String(), Epoch: st.Epoch, LSN: lsn.String(), Timeline: tli, At: time.Now().UTC()}
		b, _ := json.Marshal(d)
		if err := os.WriteFile(r.demotionFile(), b, 0o600); err != nil {
			return fmt.Errorf("record the demotion: %w", err)
		}
	}
	held := lifeline.LeaseRecord{Node: r.me.String(), Epoch: st.Epoch}
	_, err := r.a.store.UpdateState(ctx, r.w.Name, func(cur *lifeline.WorkloadState, c *store.Change) error {
		if cur.Demote != r.me.String() || cur.Epoch != st.Epoch {
			return fmt.Errorf("the switchover no longer asks this node to demote")
		}
		if cur.Demoted != nil && *cur.Demoted == *d {
			return store.ErrUnchanged
		}
		cur.Demoted = d
		c.DropLease = &held
		return nil
	})
	if err != nil {
		return fmt.Errorf("report the demotion: %w", err)
	}
	r.log.Warn("demoted: writes stopped", "checkpoint", d.LSN, "timeline", d.Timeline)
	if stopped != nil {
		// The lease is let go of only once the server is gone: without
		// it, a server still shipping its last WAL would be fenced (an
		// immediate shutdown) before its standbys had it.
		<-stopped.done
		if stopped.err != nil {
			return fmt.Errorf("stop for the switchover: %w", stopped.err)
		}
		r.setRole("")
	}
	if err := r.lease.release(ctx); err != nil {
		r.log.Warn("demoted; the etcd lease expires by itself", "err", err)
	}
	r.reportNow()
	return nil
}

// stopping is a server's stop under way: done closes when it returned err.
type stopping struct {
	done chan struct{}
	err  error
}

// awaitShutdownCheckpoint polls pg_control until the stopping server has
// written its shutdown checkpoint (or, with stopped nil, reads it once).
func (r *workloadRunner) awaitShutdownCheckpoint(ctx context.Context, stopped *stopping) (lifeline.LSN, int64, error) {
	for final := stopped == nil; ; {
		lsn, tli, err := r.pg.ShutdownCheckpoint(ctx)
		if err == nil || final {
			return lsn, tli, err
		}
		select {
		case <-stopped.done:
			if stopped.err != nil {
				return 0, 0, fmt.Errorf("stop for the switchover: %w", stopped.err)
			}
			final = true // stopped: pg_control is final now
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// waitArchived waits (at most max) until the archiver has no segment
// left to archive: a shutdown waits for it to archive them all.
func (r *workloadRunner) waitArchived(ctx context.Context, limit time.Duration) {
	if r.archive == nil {
		return
	}
	dir := filepath.Join(r.pg.DataDir(), "pg_wal", "archive_status")
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		ready, _ := filepath.Glob(filepath.Join(dir, "*.ready"))
		if len(ready) == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.log.Warn("the archiver is behind; the shutdown will wait for it")
}

// rejoin makes a former primary follow the new one: pg_rewind (after the
// WAL it wrote past the fork is saved to the repository), or a fresh base
// backup when rewinding fails (the old data is moved aside, never
// deleted). What it did and copied is recorded for the failback.
func (r *workloadRunner) rejoin(ctx context.Context, st lifeline.WorkloadState, up postgres.Upstream) error {
	r.configured, r.standbySlots = "", false
	start := time.Now()
	rec := lifeline.RejoinRecord{Node: r.me.String(), At: start.UTC(), DataBytes: r.pg.Size()}
	defer func() {
		rec.Seconds = time.Since(start).Seconds()
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.a.store.RecordRejoin(cctx, r.w.Name, rec); err != nil {
			r.log.Warn("record the rejoin", "err", err)
		}
	}()
	stats, err := r.pg.Rewind(ctx, up.Host, up.Port, func(s postgres.RewindStats) error {
		where, n, err := r.saveDiverged(ctx, st, s)
		if err != nil {
			// The rewind would destroy what was not saved: say so, and
			// go on (the lost writes are a fact already; the new
			// primary's history is the truth).
			r.log.Error("could not save the WAL written after the fork", "err", err)
			rec.Error = "diverged WAL not saved: " + err.Error()
			return nil
		}
		if n > 0 {
			rec.Diverged, rec.DivergedFrom = where, s.DivergedAt.String()
			r.log.Warn("saved the WAL written after the fork", "segments", n, "at", where, "from", s.DivergedAt.String())
		}
		return nil
	})
	if err == nil {
		rec.Method, rec.BytesCopied = "rewind", stats.CopiedBytes
		r.log.Warn("rejoined by pg_rewind", "copied_bytes", stats.CopiedBytes)
		r.clearDemotion()
		return nil
	}
	r.log.Error("pg_rewind failed; reseeding with a base backup", "err", err)
	aside, derr := r.pg.Discard()
	if derr != nil {
		rec.Error = derr.Error()
		return derr
	}
	r.log.Warn("old data directory moved aside", "path", aside)
	rec.Method = "reseed"
	err = r.seed(ctx, up)
	rec.BytesCopied = r.pg.Size()
	if err != nil {
		rec.Error = err.Error()
	}
	return err
}

// saveDiverged stores the WAL this node wrote after the fork in its
// region's repository (the active region's when its own is unreachable).
func (r *workloadRunner) saveDiverged(ctx context.Context, st lifeline.WorkloadState, s postgres.RewindStats) (string, int, error) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var errs []error
	for _, region := range []string{r.me.Region, st.Active} {
		repo, err := backup.OpenRegion(cctx, r.w, region, r.a.cfg.DataDir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		name := fmt.Sprintf("%s-epoch%d-%s", strings.ReplaceAll(r.me.String(), "/", "_"), st.Epoch, time.Now().UTC().Format("20060102T150405"))
		where, n, err := repo.SaveDiverged(cctx, filepath.Join(r.pg.DataDir(), "pg_wal"), name, s.Timeline, s.DivergedAt, 0)
		repo.Close()
		if err == nil {
			return where, n, nil
		}
		errs = append(errs, err)
	}
	return "", 0, errors.Join(errs...)
}

// restore builds this node's data directory from its own region's
// repository (backup-restore's failover): the newest base backup, with
// recovery configured to the end of the WAL there, then to end recovery on
// a new timeline and archive into this region's repository.
func (r *workloadRunner) restore(ctx context.Context, st lifeline.WorkloadState) error {
	if r.archive == nil {
		return errors.New("restore: WAL archiving is not set up on this node")
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	repo, err := backup.OpenRegion(cctx, r.w, r.me.Region, r.a.cfg.DataDir)
	if err != nil {
		return err
	}
	defer repo.Close()
	r.setProgress(fmt.Sprintf("restoring from %s", repo))
	r.reportNow()
	// WAL is fetched ahead of the recovery into a spool next to pg_wal,
	// so that restore_command is a rename, not a download by a new
	// process per segment.
	spool := filepath.Join(r.pg.Config().Dir, "wal-spool")
	_ = os.RemoveAll(spool)
	res, err := repo.Restore(cctx, r.pg.DataDir(), backup.Target{Latest: true}, backup.RestoreOptions{
		RestoreCommand: backup.SpoolCommand(spool, r.fetchCmd),
		ArchiveCommand: r.archive["archive_command"],
		Owner:          r.a.cfg.Owner,
		Logger:         r.log,
	})
	if err != nil {
		r.setProgress("restore failed: " + err.Error())
		return err
	}
	r.setProgress(fmt.Sprintf("restored backup %s (%d MB) in %.1fs; recovering to the end of the WAL (%s)", res.Backup.ID, res.Bytes>>20, res.Seconds, res.LastWAL))
	r.log.Warn("restored from the region's repository", "backup", res.Backup.ID, "last_wal", res.LastWAL, "seconds", res.Seconds)
	r.configured = ""
	r.recovering = backup.SpoolCommand(spool, r.fetchCmd)
	go r.prefetch(ctx, res, spool)
	return nil
}

// prefetch fills the spool while the restored server recovers, and stops
// once it is out of recovery (or after rejoinWait).
func (r *workloadRunner) prefetch(ctx context.Context, res *backup.RestoreResult, spool string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	repo, err := backup.OpenRegion(ctx, r.w, r.me.Region, r.a.cfg.DataDir)
	if err != nil {
		r.log.Warn("WAL prefetch: the repository", "err", err)
		return
	}
	defer repo.Close()
	p := &backup.Prefetch{Spool: spool, Chown: r.a.cfg.Owner.Chown,
		Replayed: func(ctx context.Context) (lifeline.LSN, error) {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			st, err := r.pg.Status(qctx)
			if err != nil {
				return 0, err
			}
			if !st.InRecovery {
				cancel()
				return 0, errors.New("recovered")
			}
			return st.LSN, nil
		}}
	// Ends the prefetch once the server has recovered.
	go func() {
		for ctx.Err() == nil {
			qctx, qcancel := context.WithTimeout(ctx, time.Second)
			st, err := r.pg.Status(qctx)
			qcancel()
			if err == nil && !st.InRecovery {
				cancel()
				return
			}
			sleepCtx(ctx, 500*time.Millisecond)
		}
	}()
	stats, err := p.Run(ctx, repo, &res.Backup, res.Timeline)
	r.log.Info("WAL prefetch done", "segments", stats.Segments, "bytes", stats.Bytes, "seconds", stats.Seconds, "err", err)
	_ = os.RemoveAll(spool)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// retire stops the server and sets its data aside: the region holds no
// database of the workload any more (backup-restore after a failback).
func (r *workloadRunner) retire(ctx context.Context) error {
	if r.pg.Running() {
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := r.pg.Stop(sctx)
		cancel()
		if err != nil {
			return err
		}
		r.setRole("")
	}
	r.lease.drop()
	if r.pg.Initialized() {
		aside, err := r.pg.Discard()
		if err != nil {
			return err
		}
		r.log.Warn("no database here any more: data set aside", "path", aside)
	}
	r.configured, r.standbySlots = "", false
	r.clearDemotion()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return r.a.store.DeleteStatus(cctx, r.w.Name, r.me.String())
}
