package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// Prefetch is WAL fetched ahead of a recovery, as pgBackRest's
// asynchronous archive-get does: a long-lived process (the agent)
// downloads the segments a restore will replay, several at once, into a
// spool directory, so that each restore_command is a rename of a local file
// instead of a process that starts, opens the repository and downloads.
// restore_command is then SpoolCommand's: the spool first, wal-fetch for
// anything else (a history file, a segment not prefetched yet).
type Prefetch struct {
	// Spool receives the segments; the recovering server takes them.
	Spool string
	// Parallel downloads (default 4) and Ahead, the most segments in the
	// spool at once (default 32: half a gigabyte of 16 MiB segments).
	Parallel int
	Ahead    int
	// Chown makes a fetched file the server's (its OS user renames it).
	Chown func(path string) error
	// Replayed, when set, says how far recovery has replayed (an error
	// while the server does not answer yet): segments wholly before it
	// are not fetched, and are cleared from the spool (the server fetched
	// them itself, through the fallback, when the spool lagged).
	Replayed func(ctx context.Context) (lifeline.LSN, error)
}

// SpoolCommand is the restore_command that takes a prefetched segment from
// spool (a rename: it is on the same file system as pg_wal) and asks the
// archive for anything else with fallback.
func SpoolCommand(spool, fallback string) string {
	return fmt.Sprintf("test -f %[1]s/%%f && mv -f %[1]s/%%f %%p || %[2]s", spool, fallback)
}

// PrefetchStats says what a prefetch did.
type PrefetchStats struct {
	Segments int
	Bytes    int64
	Seconds  float64
}

// Run fetches, in order, every archived segment from the backup's first
// segment (of its timeline or a later one up to timeline, the one recovery
// follows) until ctx ends or none is left; a segment the server took
// already (no longer in the spool, and not next to fetch) is not fetched
// again. It keeps at most Ahead segments in the spool. Errors are returned:
// the recovery still works without the spool, only slower.
func (p *Prefetch) Run(ctx context.Context, r *Repo, b *Info, timeline uint32) (PrefetchStats, error) {
	var st PrefetchStats
	start := time.Now()
	parallel, ahead := p.Parallel, p.Ahead
	if parallel <= 0 {
		parallel = 4
	}
	if ahead <= 0 {
		ahead = 32
	}
	if err := os.MkdirAll(p.Spool, 0o700); err != nil {
		return st, fmt.Errorf("prefetch: %w", err)
	}
	if p.Chown != nil {
		if err := p.Chown(p.Spool); err != nil {
			return st, fmt.Errorf("prefetch: %w", err)
		}
	}
	first, err := parseWALName(b.StartWAL)
	if err != nil {
		return st, fmt.Errorf("prefetch: backup %s: %w", b.ID, err)
	}
	entries, err := r.listWAL(ctx)
	if err != nil {
		return st, fmt.Errorf("prefetch: %w", err)
	}
	// The newest timeline's copy of each position: recovery follows the
	// newest timeline up to `timeline`.
	byPos := map[uint64]walName{}
	for _, e := range entries {
		if e.kind != walSegment || e.tli > timeline || e.pos() < first.pos() {
			continue
		}
		if have, ok := byPos[e.pos()]; !ok || e.tli > have.tli {
			byPos[e.pos()] = e.walName
		}
	}
	names := make([]walName, 0, len(byPos))
	for _, w := range byPos {
		names = append(names, w)
	}
	sort.Slice(names, func(i, j int) bool { return names[i].pos() < names[j].pos() })

	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	segSize := b.WALSegmentSize
	if segSize <= 0 {
		segSize = 16 << 20
	}
	perLog := uint64(1) << 32 / uint64(segSize)
	// passed reports whether recovery replayed beyond segment w.
	var replayed lifeline.LSN
	passed := func(w walName) bool {
		end := (uint64(w.hi)*perLog + uint64(w.lo) + 1) * uint64(segSize)
		return replayed != 0 && uint64(replayed) >= end
	}
	refresh := func() {
		if p.Replayed == nil {
			return
		}
		if l, err := p.Replayed(ctx); err == nil {
			replayed = l
			p.clear(passed)
		}
	}
	for _, w := range names {
		// Stay at most `ahead` segments in front of the server.
		for ctx.Err() == nil && p.spooled() >= ahead {
			sleepCtx(ctx, 20*time.Millisecond)
			refresh()
		}
		if ctx.Err() != nil {
			break
		}
		if passed(w) {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			n, err := p.fetch(ctx, r, w.name)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil && ctx.Err() == nil {
				firstErr = err
			}
			if err == nil {
				st.Segments++
				st.Bytes += n
			}
		}()
	}
	wg.Wait()
	st.Seconds = time.Since(start).Seconds()
	return st, firstErr
}

// fetch downloads one segment into the spool: to a temporary name, then
// renamed, so the server never takes a partial file.
func (p *Prefetch) fetch(ctx context.Context, r *Repo, name string) (int64, error) {
	tmp := filepath.Join(p.Spool, "."+name+".part")
	if err := r.FetchWAL(ctx, name, tmp); err != nil {
		_ = os.Remove(tmp)
		return 0, err
	}
	if p.Chown != nil {
		if err := p.Chown(tmp); err != nil {
			return 0, err
		}
	}
	fi, err := os.Stat(tmp)
	if err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, filepath.Join(p.Spool, name)); err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

// spooled counts the segments waiting in the spool.
func (p *Prefetch) spooled() int {
	es, err := os.ReadDir(p.Spool)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range es {
		if e.Name()[0] != '.' {
			n++
		}
	}
	return n
}

// clear removes the spooled segments recovery has gone past.
func (p *Prefetch) clear(passed func(walName) bool) {
	es, err := os.ReadDir(p.Spool)
	if err != nil {
		return
	}
	for _, e := range es {
		if w, err := parseWALName(e.Name()); err == nil && passed(w) {
			_ = os.Remove(filepath.Join(p.Spool, e.Name()))
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
