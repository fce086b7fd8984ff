package controller

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/internal/install"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/store"
)

// Backups runs a workload's backups, their copies to the other regions,
// retention and verification. The controller leader runs them on the
// spec's schedule; `lifeline backup` runs the same code on demand.
type Backups struct {
	T       *lifeline.Topology
	S       *store.Store
	DataDir string
	PGBin   string
	Owner   *postgres.Owner
	// HostPort maps a node's database address to the one to dial from here.
	HostPort func(host string, port int) (string, int)
	// Client is how to connect to a workload's databases as superuser.
	Client func(w *lifeline.Workload) (postgres.Client, error)
	Log    *slog.Logger
}

// primary reads where the workload's primary is (its state) and the
// agents' reports. Backups follow the state: they are taken in, and copied
// from, the active region.
func (b *Backups) primary(ctx context.Context, w *lifeline.Workload) (lifeline.NodeID, map[string]lifeline.NodeStatus, error) {
	st, _, found, err := b.S.State(ctx, w.Name)
	if err != nil {
		return lifeline.NodeID{}, nil, err
	}
	id, ok := st.PrimaryNode()
	if !found || !ok {
		return lifeline.NodeID{}, nil, fmt.Errorf("workload %s has no primary yet", w.Name)
	}
	m, err := b.S.Statuses(ctx, w.Name)
	if err != nil {
		return id, nil, err
	}
	reports := map[string]lifeline.NodeStatus{}
	for _, st := range m {
		reports[st.Node] = st
	}
	return id, reports, nil
}

// source picks where to take a backup from: a healthy standby of the
// primary's region, so the primary is spared, else the primary.
func (b *Backups) source(w *lifeline.Workload, primary lifeline.NodeID, reports map[string]lifeline.NodeStatus) lifeline.NodeID {
	for _, id := range b.T.Nodes() {
		st := reports[id.String()]
		if id.Region == primary.Region && id != primary && st.Healthy && st.InRecovery && time.Since(st.Reported) < b.T.Control.LeaseTTL {
			return id
		}
	}
	return primary
}

func (b *Backups) connect(ctx context.Context, w *lifeline.Workload, id lifeline.NodeID) (*pgx.Conn, error) {
	host, port := b.HostPort(b.T.Address(id), w.Database.Port)
	client, err := b.Client(w)
	if err != nil {
		return nil, err
	}
	cfg, err := client.ConnConfig(host, port, b.T.Address(id), "postgres")
	if err != nil {
		return nil, err
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// Now takes a full base backup into the primary's region's repository.
func (b *Backups) Now(ctx context.Context, w *lifeline.Workload, progress func(backup.Progress)) (*backup.Info, error) {
	primary, reports, err := b.primary(ctx, w)
	if err != nil {
		return nil, err
	}
	src := b.source(w, primary, reports)
	repo, err := backup.OpenRegion(ctx, w, primary.Region, b.DataDir)
	if err != nil {
		return nil, err
	}
	defer repo.Close()
	host, port := b.HostPort(b.T.Address(src), w.Database.Port)
	client, err := b.Client(w)
	if err != nil {
		return nil, err
	}
	b.Log.Info("base backup", "workload", w.Name, "from", src.String(), "repository", repo.String())
	start := time.Now()
	info, err := repo.Backup(ctx, backup.Source{
		BinDir: b.PGBin, Owner: b.Owner, Host: host, Port: port, User: client.User, Password: client.Password,
		TLS: client.TLS, ServerName: b.T.Address(src), Node: src.String(),
	}, backup.BackupOptions{
		Parallel: 2, Progress: progress, Logger: b.Log,
		SwitchWAL: func(ctx context.Context) error {
			conn, err := b.connect(ctx, w, primary)
			if err != nil {
				return err
			}
			defer conn.Close(context.Background())
			_, err = conn.Exec(ctx, "SELECT pg_switch_wal()")
			return err
		},
	})
	rec := lifeline.BackupRecord{Node: src.String(), Region: primary.Region, At: start.UTC(), Seconds: time.Since(start).Seconds()}
	if err != nil {
		rec.Error = err.Error()
	} else {
		rec.ID, rec.Bytes, rec.Stored = info.ID, info.Bytes, info.StoredBytes
	}
	b.record(ctx, b.S.Keys().BackupState(w.Name, "last"), rec)
	return info, err
}

func (b *Backups) record(ctx context.Context, key string, v any) {
	if err := b.S.Put(ctx, key, v); err != nil {
		b.Log.Warn("record backup state", "key", key, "err", err)
	}
}

// RestoreCommand writes the archive configuration for a repository into
// dir (readable by PostgreSQL's OS user only) and returns the
// restore_command that reads it.
func (b *Backups) RestoreCommand(w *lifeline.Workload, region, dir string) (string, error) {
	bin, err := install.Binary(b.DataDir)
	if err != nil {
		return "", err
	}
	key, err := backup.Key(w)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	conf := filepath.Join(dir, fmt.Sprintf("restore-%s-%s.json", w.Name, region))
	err = backup.WriteArchiveConfig(conf, backup.ArchiveConfig{URL: backup.RepoURL(w, region, b.DataDir), Workload: w.Name, Key: hex.EncodeToString(key)}, b.Owner)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s wal-fetch --config %s %%f %%p", bin, conf), nil
}

// Verify restores the latest backup of a region's repository into a
// scratch directory, starts it and checks it: a drill that proves the
// backups restore, and, for a backup-restore workload, how long a restore
// takes against the RTO.
func (b *Backups) Verify(ctx context.Context, w *lifeline.Workload, region string) (*backup.VerifyResult, error) {
	repo, err := backup.OpenRegion(ctx, w, region, b.DataDir)
	if err != nil {
		return nil, err
	}
	defer repo.Close()
	scratch := filepath.Join(b.DataDir, "scratch")
	cmd, err := b.RestoreCommand(w, region, scratch)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(scratch, fmt.Sprintf("verify-%s-%s-%d", w.Name, region, time.Now().UnixNano()))
	start := time.Now()
	res, err := repo.Verify(ctx, dir, backup.VerifyOptions{
		RestoreCommand: cmd, BinDir: b.PGBin, Owner: b.Owner, Superuser: w.Database.Superuser,
	})
	rec := lifeline.VerifyRecord{At: start.UTC(), Region: region, RTOSeconds: w.Objectives.RTO.Seconds()}
	if res != nil {
		rec.Passed, rec.Failure = res.Passed, res.Failure
		rec.RestoreSeconds, rec.TotalSeconds = res.RestoreSeconds, res.TotalSeconds
		rec.Tables = len(res.Tables)
		for _, tc := range res.Tables {
			rec.Rows += tc.Rows
		}
		if res.Restore != nil {
			rec.Backup = res.Restore.Backup.ID
		}
	}
	if err != nil && rec.Failure == "" {
		rec.Failure = err.Error()
	}
	rec.WithinRTO = rec.Passed && rec.TotalSeconds <= rec.RTOSeconds
	b.record(ctx, b.S.Keys().BackupState(w.Name, "verify"), rec)
	return res, err
}

// Copy brings every other region's repository up to date with the
// primary's region's, so each region can restore from its own alone.
func (b *Backups) Copy(ctx context.Context, w *lifeline.Workload) error {
	primary, _, err := b.primary(ctx, w)
	if err != nil {
		return err
	}
	src, err := backup.OpenRegion(ctx, w, primary.Region, b.DataDir)
	if err != nil {
		// Every copy is failing: say so where status shows the copies.
		for _, r := range b.T.Regions {
			if r.Name != primary.Region {
				b.recordCopy(ctx, w, primary.Region, r.Name, fmt.Errorf("open the source repository: %w", err))
			}
		}
		return err
	}
	defer src.Close()
	var errs []error
	for _, r := range b.T.Regions {
		if r.Name == primary.Region {
			continue
		}
		key := b.S.Keys().BackupState(w.Name, "copy-"+r.Name)
		var prev lifeline.CopyRecord
		_, _, _ = b.S.Get(ctx, key, &prev)
		rec := lifeline.CopyRecord{Region: r.Name, From: primary.Region, At: time.Now().UTC(), InSyncAt: prev.InSyncAt}
		dst, err := backup.OpenRegion(ctx, w, r.Name, b.DataDir)
		if err == nil {
			var rep backup.CopyReport
			rep, err = src.CopyTo(ctx, dst, backup.CopyOptions{})
			dst.Close()
			rec.NewestWAL, rec.SourceWAL, rec.Backup = rep.NewestWAL, rep.SourceNewestWAL, rep.NewestBackup
			if err == nil && rep.NewestWAL == rep.SourceNewestWAL {
				rec.InSyncAt = rec.At
			}
		}
		if err != nil {
			rec.Error = err.Error()
			errs = append(errs, fmt.Errorf("copy to %s: %w", r.Name, err))
		}
		b.record(ctx, key, rec)
	}
	return errors.Join(errs...)
}

// recordCopy records a failed copy into region, keeping when it was last in sync.
func (b *Backups) recordCopy(ctx context.Context, w *lifeline.Workload, from, region string, cause error) {
	key := b.S.Keys().BackupState(w.Name, "copy-"+region)
	var prev lifeline.CopyRecord
	_, _, _ = b.S.Get(ctx, key, &prev)
	b.record(ctx, key, lifeline.CopyRecord{Region: region, From: from, At: time.Now().UTC(), InSyncAt: prev.InSyncAt,
		NewestWAL: prev.NewestWAL, SourceWAL: prev.SourceWAL, Backup: prev.Backup, Error: cause.Error()})
}

// Retention applies the spec's retention to every region's repository.
func (b *Backups) Retention(ctx context.Context, w *lifeline.Workload) error {
	var errs []error
	for _, r := range b.T.Regions {
		repo, err := backup.OpenRegion(ctx, w, r.Name, b.DataDir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		plan, err := repo.ApplyRetention(ctx, backup.PolicyFor(w.Backups), time.Now())
		repo.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("retention in %s: %w", r.Name, err))
			continue
		}
		b.Log.Info("retention", "workload", w.Name, "region", r.Name, "plan", plan)
	}
	return errors.Join(errs...)
}

// LastBackup reads the record of the last backup.
func LastBackup(ctx context.Context, s *store.Store, w string) (lifeline.BackupRecord, bool, error) {
	var r lifeline.BackupRecord
	_, found, err := s.Get(ctx, s.Keys().BackupState(w, "last"), &r, clientv3.WithSerializable())
	return r, found, err
}

// copyEvery is how often the leader copies the active region's repository
// to the other regions: WAL is archived every archive_timeout at the
// latest, so copying more often than every few seconds gains nothing.
const copyEvery = 5 * time.Second

// schedule runs, while this controller leads, each workload's backups on
// its `full` interval (the first one as soon as the primary serves, and
// one as soon as a region failover moved it),
// a verification of each new backup, retention, and the cross-region copy.
func (c *Controller) schedule(ctx context.Context) {
	if c.cfg.Backups == nil {
		return
	}
	b := c.cfg.Backups
	tick := time.NewTicker(copyEvery)
	defer tick.Stop()
	for {
		for i := range c.t.Workloads {
			w := &c.t.Workloads[i]
			if err := b.Copy(ctx, w); err != nil && ctx.Err() == nil {
				c.log.Debug("copy backups", "workload", w.Name, "err", err)
			}
			last, found, err := LastBackup(ctx, c.s, w.Name)
			if err != nil {
				continue
			}
			primary, reports, err := b.primary(ctx, w)
			if err != nil || !reports[primary.String()].Healthy {
				continue
			}
			// A backup of the active region within `full`; after a region
			// failover the new active region's repository gets one at once
			// (its copies hold the old region's backups and WAL, not the
			// new timeline's).
			if (found && last.Error == "" && last.Region == primary.Region && time.Since(last.At) < w.Backups.Full) ||
				(found && last.Error != "" && time.Since(last.At) < time.Minute) {
				continue
			}
			info, err := b.Now(ctx, w, nil)
			if err != nil {
				c.log.Error("scheduled backup", "workload", w.Name, "err", err)
				continue
			}
			c.log.Info("scheduled backup done", "workload", w.Name, "id", info.ID)
			if err := b.Retention(ctx, w); err != nil {
				c.log.Warn("retention", "workload", w.Name, "err", err)
			}
			if err := b.Copy(ctx, w); err != nil {
				c.log.Warn("copy backups", "workload", w.Name, "err", err)
			}
			if res, err := b.Verify(ctx, w, primary.Region); err != nil || !res.Passed {
				c.log.Error("backup verification failed", "workload", w.Name, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ConnectNode opens a superuser connection to a node's database.
func (b *Backups) ConnectNode(ctx context.Context, w *lifeline.Workload, region, zone string) (*pgx.Conn, error) {
	return b.connect(ctx, w, lifeline.NodeID{Region: region, Zone: zone})
}
