package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Policy says which backups to keep. With both rules set, a backup either
// rule keeps is kept. The zero Policy deletes nothing.
type Policy struct {
	// Window is how far back point-in-time recovery must reach: backups that
	// ended within it are kept, and so is the newest one that ended before
	// it, from which a restore to the very start of the window replays WAL.
	Window time.Duration
	// KeepFull keeps the newest KeepFull backups.
	KeepFull int
}

// PolicyFor is the policy of a workload's spec (backups.retention,
// backups.retention-full).
func PolicyFor(b lifeline.Backups) Policy {
	return Policy{Window: b.Retention, KeepFull: b.RetentionFull}
}

// Validate rejects negative settings.
func (p Policy) Validate() error {
	if p.Window < 0 || p.KeepFull < 0 {
		return fmt.Errorf("retention policy: window %s and keep %d must not be negative", p.Window, p.KeepFull)
	}
	return nil
}

// Plan is what retention keeps and deletes.
type Plan struct {
	// Keep and Delete are backup ids, oldest first.
	Keep   []string
	Delete []string
	// Reasons says why each kept backup is kept.
	Reasons map[string]string
	// WALCutoff is the start segment of the oldest kept backup: WAL files
	// (segments, .partial and .backup files, of every timeline) before it
	// are deleted. Empty when no WAL is deleted (no backups).
	WALCutoff string
	// DeleteWAL lists the WAL file names to delete, in name order.
	DeleteWAL []string
	// Incomplete lists backup ids with parts but no manifest (failed or
	// abandoned backups) older than IncompleteAge; only ApplyRetention
	// fills it in, from the bucket's listing.
	Incomplete []string
}

// IncompleteAge is how old the newest object of a backup without a
// manifest must be before retention removes it: far longer than any backup
// takes to upload its parts and wait for its WAL, so a backup in progress is
// never touched.
const IncompleteAge = 24 * time.Hour

// PlanRetention decides, without I/O, what policy p keeps of backups and of
// the WAL archive (walNames, as listed) at time now.
//
// The newest backup is always kept; with no policy, everything (WAL too). WAL is
// deleted only before the start of the oldest kept backup, whatever its
// timeline: no kept backup can need WAL from before its own start, while a
// backup may need WAL of a later timeline that branched off after it (a
// per-timeline cutoff could delete that). Timeline history files are always
// kept (they are tiny, and recovery reads them to follow timelines), and so
// is every name that is not a WAL file name.
func PlanRetention(backups []Info, walNames []string, p Policy, now time.Time) Plan {
	b := slices.Clone(backups)
	sortInfos(b)
	plan := Plan{Reasons: map[string]string{}}
	if len(b) == 0 {
		return plan
	}
	keep := func(id, why string) {
		if _, ok := plan.Reasons[id]; !ok {
			plan.Reasons[id] = why
		}
	}
	keep(b[len(b)-1].ID, "newest")
	if p.Window <= 0 && p.KeepFull <= 0 {
		for _, x := range b {
			keep(x.ID, "no retention policy")
			plan.Keep = append(plan.Keep, x.ID)
		}
		return plan
	}
	if p.Window > 0 {
		edge := now.Add(-p.Window)
		edgeKept := false
		for i := len(b) - 1; i >= 0; i-- {
			switch {
			case b[i].StopTime.After(edge):
				keep(b[i].ID, "within the window")
			case !edgeKept:
				keep(b[i].ID, "newest before the window: restores to its start")
				edgeKept = true
			}
		}
	}
	if p.KeepFull > 0 {
		for i := len(b) - 1; i >= 0 && i >= len(b)-p.KeepFull; i-- {
			keep(b[i].ID, fmt.Sprintf("one of the newest %d", p.KeepFull))
		}
	}

	var cutoff walName
	found := false
	for _, x := range b {
		if _, ok := plan.Reasons[x.ID]; !ok {
			plan.Delete = append(plan.Delete, x.ID)
			continue
		}
		plan.Keep = append(plan.Keep, x.ID)
		w, err := parseWALName(x.StartWAL)
		if err != nil {
			// A kept backup whose start is unknown: delete no WAL at all.
			return planKeepWAL(plan)
		}
		if !found || w.pos() < cutoff.pos() {
			cutoff, found = w, true
		}
	}
	plan.WALCutoff = cutoff.name
	for _, name := range walNames {
		w, err := parseWALName(name)
		if err != nil || w.kind == walHistory {
			continue
		}
		if w.pos() < cutoff.pos() {
			plan.DeleteWAL = append(plan.DeleteWAL, name)
		}
	}
	slices.Sort(plan.DeleteWAL)
	return plan
}

func planKeepWAL(p Plan) Plan {
	p.WALCutoff, p.DeleteWAL = "", nil
	return p
}

// ApplyRetention plans retention for the repository at time now and carries
// it out: each deleted backup loses its manifest first (so it stops existing
// before its parts go), then its parts; WAL is deleted only after every
// backup deletion succeeded; then backups left without a manifest for
// IncompleteAge are removed. It returns the plan and every error met.
func (r *Repo) ApplyRetention(ctx context.Context, p Policy, now time.Time) (Plan, error) {
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	backups, err := r.List(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("retention: %w", err)
	}
	wal, err := r.listWAL(ctx)
	if err != nil {
		return Plan{}, fmt.Errorf("retention: %w", err)
	}
	names := make([]string, len(wal))
	for i, w := range wal {
		names[i] = w.name
	}
	plan := PlanRetention(backups, names, p, now)
	if len(backups) > 0 && len(plan.Keep) == 0 {
		return plan, errors.New("retention: internal error: the plan keeps no backup")
	}
	for _, id := range plan.Delete {
		if err := r.deleteBackup(ctx, id); err != nil {
			return plan, fmt.Errorf("retention: %w", err)
		}
	}
	var errs []error
	for _, name := range plan.DeleteWAL {
		if err := r.store.Delete(ctx, r.walKey(name)); err != nil && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	_, dirs, err := r.backupIDs(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for id, d := range dirs {
		if d.manifest || d.newest.IsZero() || now.Sub(d.newest) < IncompleteAge {
			continue
		}
		plan.Incomplete = append(plan.Incomplete, id)
		for _, e := range d.keys {
			if err := r.store.Delete(ctx, e.Key); err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, err)
			}
		}
	}
	slices.Sort(plan.Incomplete)
	if err := errors.Join(errs...); err != nil {
		return plan, fmt.Errorf("retention: %w", err)
	}
	return plan, nil
}

// deleteBackup removes a backup: manifest first, then everything else.
func (r *Repo) deleteBackup(ctx context.Context, id string) error {
	if err := r.store.Delete(ctx, r.manifestKey(id)); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete backup %s: %w", id, err)
	}
	for e, err := range r.store.List(ctx, r.backupPrefix(id)) {
		if err != nil {
			return fmt.Errorf("delete backup %s: %w", id, err)
		}
		if strings.HasSuffix(e.Key, "/"+manifestName) {
			continue
		}
		if err := r.store.Delete(ctx, e.Key); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("delete backup %s: %w", id, err)
		}
	}
	return nil
}
