package backup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/internal/testenv"
)

func TestPlanRetention(t *testing.T) {
	day0 := time.Date(2026, 11, 20, 1, 0, 0, 0, time.UTC)
	// Backup i ends on day i and starts in segment 10*i+1 of timeline 1,
	// except backup 4, taken after a failover, on timeline 2.
	b := func(i int) backup.Info {
		tli := 1
		if i == 4 {
			tli = 2
		}
		return backup.Info{
			ID:       fmt.Sprintf("2026112%dT010000Z", i),
			StopTime: day0.Add(time.Duration(i) * 24 * time.Hour),
			StartWAL: fmt.Sprintf("%08X00000000%08X", tli, 10*i+1),
		}
	}
	backups := []backup.Info{b(3), b(1), b(0), b(2), b(4)} // List order must not matter
	wal := []string{
		"000000010000000000000001", "000000010000000000000005",
		"000000010000000000000010.00000028.backup", "000000010000000000000011",
		"000000010000000000000015", "000000010000000000000021", "000000010000000000000025.partial",
		"000000010000000000000028", "00000002.history", "000000020000000000000028",
		"000000020000000000000031", "000000020000000000000041", "000000020000000000000045",
		"00000003.history", "garbage",
	}
	ids := func(is ...int) []string {
		var out []string
		for _, i := range is {
			out = append(out, b(i).ID)
		}
		return out
	}
	walBefore := func(cutoff string) []string {
		var out []string
		for _, w := range wal {
			if len(w) >= 24 && !strings.HasSuffix(w, ".history") && w[8:24] < cutoff[8:24] {
				out = append(out, w)
			}
		}
		slices.Sort(out)
		return out
	}
	now := day0.Add(4*24*time.Hour + time.Hour) // an hour after backup 4

	for _, tc := range []struct {
		name    string
		backups []backup.Info
		p       backup.Policy
		now     time.Time
		want    backup.Plan
	}{
		{
			name: "no backups: nothing to do", backups: nil, p: backup.Policy{Window: time.Hour}, now: now,
			want: backup.Plan{Reasons: map[string]string{}},
		},
		{
			name: "no policy keeps everything", backups: backups, p: backup.Policy{}, now: now,
			want: backup.Plan{Keep: ids(0, 1, 2, 3, 4), Reasons: reasons(ids(0, 1, 2, 3, 4), "no retention policy", ids(4)...)},
		},
		{
			// The window starts at day 2 + 1h: backups 3 and 4 end inside it;
			// backup 2 ended before it and is what a restore to its very
			// start replays from.
			name: "window keeps the backup before its start", backups: backups, p: backup.Policy{Window: 2 * 24 * time.Hour}, now: now,
			want: backup.Plan{
				Keep: ids(2, 3, 4), Delete: ids(0, 1),
				Reasons: map[string]string{
					b(4).ID: "newest", b(3).ID: "within the window", b(2).ID: "newest before the window: restores to its start",
				},
				WALCutoff: b(2).StartWAL, DeleteWAL: walBefore(b(2).StartWAL),
			},
		},
		{
			name: "window edge exactly at a backup's stop", backups: backups, p: backup.Policy{Window: 2*24*time.Hour + time.Hour}, now: now,
			want: backup.Plan{
				Keep: ids(2, 3, 4), Delete: ids(0, 1),
				Reasons: map[string]string{
					b(4).ID: "newest", b(3).ID: "within the window", b(2).ID: "newest before the window: restores to its start",
				},
				WALCutoff: b(2).StartWAL, DeleteWAL: walBefore(b(2).StartWAL),
			},
		},
		{
			name: "window older than every backup", backups: backups, p: backup.Policy{Window: 30 * 24 * time.Hour}, now: now,
			want: backup.Plan{
				Keep: ids(0, 1, 2, 3, 4),
				Reasons: map[string]string{
					b(4).ID: "newest", b(3).ID: "within the window", b(2).ID: "within the window", b(1).ID: "within the window", b(0).ID: "within the window",
				},
				WALCutoff: b(0).StartWAL, DeleteWAL: walBefore(b(0).StartWAL),
			},
		},
		{
			name: "tiny window keeps the newest", backups: backups, p: backup.Policy{Window: time.Minute}, now: now,
			want: backup.Plan{
				Keep: ids(4), Delete: ids(0, 1, 2, 3), Reasons: map[string]string{b(4).ID: "newest"},
				// Timeline 1 segments before the cutoff go too; history files stay.
				WALCutoff: b(4).StartWAL, DeleteWAL: walBefore(b(4).StartWAL),
			},
		},
		{
			name: "keep the newest two", backups: backups, p: backup.Policy{KeepFull: 2}, now: now,
			want: backup.Plan{
				Keep: ids(3, 4), Delete: ids(0, 1, 2),
				Reasons:   map[string]string{b(4).ID: "newest", b(3).ID: "one of the newest 2"},
				WALCutoff: b(3).StartWAL, DeleteWAL: walBefore(b(3).StartWAL),
			},
		},
		{
			name: "both rules: the union", backups: backups, p: backup.Policy{Window: 36 * time.Hour, KeepFull: 4}, now: now,
			want: backup.Plan{
				Keep: ids(1, 2, 3, 4), Delete: ids(0),
				Reasons: map[string]string{
					b(4).ID: "newest", b(3).ID: "within the window",
					b(2).ID: "newest before the window: restores to its start", b(1).ID: "one of the newest 4",
				},
				WALCutoff: b(1).StartWAL, DeleteWAL: walBefore(b(1).StartWAL),
			},
		},
		{
			name: "a kept backup with an unknown start deletes no WAL", now: now, p: backup.Policy{KeepFull: 1},
			backups: []backup.Info{b(0), {ID: "20261125T000000Z", StopTime: now}},
			want: backup.Plan{
				Keep: []string{"20261125T000000Z"}, Delete: ids(0), Reasons: map[string]string{"20261125T000000Z": "newest"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := backup.PlanRetention(tc.backups, wal, tc.p, tc.now)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("PlanRetention (-want +got):\n%s", diff)
			}
			// Whatever the policy: the newest backup is kept, and no WAL at
			// or after a kept backup's start is deleted.
			if len(tc.backups) > 0 && !slices.Contains(got.Keep, b(4).ID) && tc.backups[len(tc.backups)-1].ID == b(4).ID {
				t.Errorf("the newest backup is not kept")
			}
			for _, id := range got.Keep {
				for _, x := range tc.backups {
					if x.ID == id && len(x.StartWAL) == 24 {
						for _, w := range got.DeleteWAL {
							if w[8:24] >= x.StartWAL[8:24] {
								t.Errorf("deletes %s, which kept backup %s (from %s) needs", w, id, x.StartWAL)
							}
						}
					}
				}
			}
		})
	}
}

func reasons(ids []string, why string, newest ...string) map[string]string {
	m := map[string]string{}
	for _, id := range ids {
		m[id] = why
	}
	for _, id := range newest {
		m[id] = "newest"
	}
	return m
}

func TestPolicyFor(t *testing.T) {
	got := backup.PolicyFor(lifeline.Backups{Retention: 7 * 24 * time.Hour, RetentionFull: 3})
	if got != (backup.Policy{Window: 7 * 24 * time.Hour, KeepFull: 3}) {
		t.Errorf("PolicyFor = %+v", got)
	}
	if err := (backup.Policy{Window: -1}).Validate(); err == nil {
		t.Errorf("a negative window validated")
	}
}

// TestRepo_ApplyRetention applies a window whose start falls between the
// second and the third backup: the first backup and the WAL before the
// second go, and a restore to the very start of the window still works.
func TestRepo_ApplyRetention(t *testing.T) {
	h := newHistory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	spec, r := clone(t, h.r, h.repo)
	// Leave a backup that never got its manifest, a day old.
	stale := filepath.Join(spec.dir, "orders", "backups", "20260101T000000Z")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stale, "part-00000"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(filepath.Join(stale, "part-00000"), old, old); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	edge := h.b[2].StopTime.Add(h.before3.Sub(h.b[2].StopTime) / 2) // after backup 2, before batch 3 began
	plan, err := r.ApplyRetention(ctx, backup.Policy{Window: now.Sub(edge)}, now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{h.b[2].ID, h.b[3].ID}, plan.Keep); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{h.b[1].ID}, plan.Delete); diff != "" {
		t.Errorf("deleted (-want +got):\n%s", diff)
	}
	if plan.WALCutoff != h.b[2].StartWAL || len(plan.DeleteWAL) == 0 {
		t.Errorf("WAL cutoff %s (want %s), deleting %v", plan.WALCutoff, h.b[2].StartWAL, plan.DeleteWAL)
	}
	if diff := cmp.Diff([]string{"20260101T000000Z"}, plan.Incomplete); diff != "" {
		t.Errorf("incomplete backups removed (-want +got):\n%s", diff)
	}
	list, err := r.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Errorf("%d backups left, want 2", len(list))
	}
	for _, name := range plan.DeleteWAL {
		if _, err := os.Stat(filepath.Join(spec.dir, "orders", "wal", name)); !os.IsNotExist(err) {
			t.Errorf("WAL %s still there", name)
		}
	}
	if _, err := os.Stat(filepath.Join(stale, "part-00000")); !os.IsNotExist(err) {
		t.Errorf("incomplete backup still there")
	}
	if _, err := os.Stat(filepath.Join(spec.dir, "orders", "wal", h.b[2].StartWAL)); err != nil {
		t.Errorf("the oldest kept backup's first segment: %v", err)
	}

	// Point-in-time recovery at the very start of the window.
	res, err := r.Verify(ctx, filepath.Join(testenv.Dir(t), "scratch"), verifyOpts(t, spec, h.src.net+".7", backup.Target{Time: edge}))
	if err != nil {
		t.Fatalf("Verify at the window's start: %v\n%s", err, res.Log)
	}
	if res.Restore.Backup.ID != h.b[2].ID || rows(t, res, "t") != rowsAfter(2) {
		t.Errorf("restored %d rows from %s, want %d from %s", rows(t, res, "t"), res.Restore.Backup.ID, rowsAfter(2), h.b[2].ID)
	}
	// Before the window there is nothing to restore from any more.
	_, err = r.Restore(ctx, filepath.Join(testenv.Dir(t), "data"), backup.Target{Time: h.t[1]}, backup.RestoreOptions{RestoreCommand: "false"})
	if !errors.Is(err, backup.ErrNoBackup) {
		t.Errorf("restore before the window: %v, want ErrNoBackup", err)
	}
	// Applying it again deletes nothing more.
	again, err := r.ApplyRetention(ctx, backup.Policy{Window: now.Sub(edge)}, now)
	if err != nil || len(again.Delete) != 0 || len(again.DeleteWAL) != 0 {
		t.Errorf("second ApplyRetention: %+v, %v", again, err)
	}
}
