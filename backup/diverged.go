package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/lifeline-dr/lifeline"
)

// SaveDiverged keeps the WAL a former primary wrote after the point where
// the new primary's timeline forked from it (writes a failover lost) before
// pg_rewind replaces them: every segment of timeline tli in walDir that
// holds WAL at or after from is stored under <workload>/diverged/<name>/.
// It returns the prefix they were stored under and how many.
func (r *Repo) SaveDiverged(ctx context.Context, walDir, name string, tli uint32, from lifeline.LSN, segSize int64) (string, int, error) {
	if segSize <= 0 {
		segSize = 16 << 20
	}
	entries, err := os.ReadDir(walDir)
	if err != nil {
		return "", 0, fmt.Errorf("save diverged WAL: %w", err)
	}
	first := uint64(from) / uint64(segSize)
	var names []string
	for _, e := range entries {
		w, err := parseWALName(e.Name())
		if err != nil || w.kind != walSegment || w.tli != tli {
			continue
		}
		seg := uint64(w.hi)*(uint64(1)<<32/uint64(segSize)) + uint64(w.lo)
		if seg >= first {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	prefix := r.workload + "/diverged/" + strings.ReplaceAll(name, "/", "_") + "/"
	for _, n := range names {
		f, err := os.Open(filepath.Join(walDir, n))
		if err != nil {
			return prefix, 0, fmt.Errorf("save diverged WAL %s: %w", n, err)
		}
		_, err = r.store.Put(ctx, prefix+n, f)
		f.Close()
		if err != nil {
			return prefix, 0, fmt.Errorf("save diverged WAL %s: %w", n, err)
		}
	}
	return r.url + "/" + prefix, len(names), nil
}
