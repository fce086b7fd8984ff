package backup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// CopyOptions tune CopyTo.
type CopyOptions struct {
	// Parallel is how many objects are copied at once (DefaultParallel when 0).
	Parallel int
}

// CopyReport says what CopyTo did and how far the destination is behind.
type CopyReport struct {
	// Objects and Bytes (as stored) copied; WAL files and Backups (complete
	// backups, manifest included) among them.
	Objects int
	Bytes   int64
	WAL     int
	Backups int
	// Present counts objects the destination already had.
	Present int
	// Conflicts lists objects the destination holds with another size; they
	// are left alone (never overwritten) and make CopyTo fail.
	Conflicts []string
	// NewestWAL is the newest WAL segment now in the destination and
	// NewestWALTime when the source archived it; SourceNewestWAL is the
	// source's. NewestBackup and SourceNewestBackup are the newest complete
	// backups' ids. They differ while a copy is behind.
	NewestWAL          string
	NewestWALTime      time.Time
	SourceNewestWAL    string
	NewestBackup       string
	SourceNewestBackup string
	Seconds            float64
}

// CopyTo copies every object of the workload that dst lacks, as stored
// (still compressed and encrypted: dst must use the same key to read them;
// objstore verifies each object on the way and refuses a damaged one). WAL
// goes first; then each complete backup, parts before manifest, so that a
// backup appears in dst only once its parts and the WAL it needs are there.
// Backups without a manifest (in progress, failed) are not copied. Objects
// dst already holds are not rewritten. dst must be for the same workload.
func (r *Repo) CopyTo(ctx context.Context, dst *Repo, opt CopyOptions) (CopyReport, error) {
	started := time.Now()
	var rep CopyReport
	if dst.workload != r.workload {
		return rep, fmt.Errorf("copy %s to %s: the destination is for workload %s", r, dst, dst.workload)
	}
	if opt.Parallel <= 0 {
		opt.Parallel = DefaultParallel
	}
	// Complete backups first: their WAL was archived before their manifest
	// was written, so the WAL listing that follows holds it.
	ids, dirs, err := r.backupIDs(ctx)
	if err != nil {
		return rep, fmt.Errorf("copy: %w", err)
	}
	wal, err := r.listWAL(ctx)
	if err != nil {
		return rep, fmt.Errorf("copy: %w", err)
	}
	have := map[string]int64{}
	for e, err := range dst.store.List(ctx, dst.workload+"/") {
		if err != nil {
			return rep, fmt.Errorf("copy: destination: %w", err)
		}
		have[e.Key] = e.StoredSize
	}

	// History files first, then segments in WAL order.
	slices.SortFunc(wal, func(a, b walEntry) int {
		if (a.kind == walHistory) != (b.kind == walHistory) {
			if a.kind == walHistory {
				return -1
			}
			return 1
		}
		return strings.Compare(a.name, b.name)
	})
	var items []copyItem
	for _, w := range wal {
		items = append(items, copyItem{key: r.walKey(w.name), size: w.stored})
	}
	if err := r.copyAll(ctx, dst, items, have, opt.Parallel, &rep, func() { rep.WAL++ }); err != nil {
		return rep, fmt.Errorf("copy WAL: %w", err)
	}

	var errs []error
	for _, id := range ids {
		var parts []copyItem
		var manifest copyItem
		for _, e := range dirs[id].keys {
			if strings.HasSuffix(e.Key, "/"+manifestName) {
				manifest = copyItem{key: e.Key, size: e.StoredSize}
			} else {
				parts = append(parts, copyItem{key: e.Key, size: e.StoredSize})
			}
		}
		if _, ok := have[manifest.key]; ok {
			rep.Present += len(parts) + 1
			continue
		}
		if err := r.copyAll(ctx, dst, parts, have, opt.Parallel, &rep, nil); err != nil {
			errs = append(errs, fmt.Errorf("copy backup %s: %w", id, err))
			continue
		}
		if err := r.copyAll(ctx, dst, []copyItem{manifest}, have, 1, &rep, func() { rep.Backups++ }); err != nil {
			errs = append(errs, fmt.Errorf("copy backup %s: %w", id, err))
		}
	}

	// What dst now holds, for the copy lag.
	times := map[string]time.Time{}
	for _, w := range wal {
		times[w.name] = w.modTime
		if w.kind == walSegment && newerSegment(w.name, rep.SourceNewestWAL) {
			rep.SourceNewestWAL = w.name
		}
	}
	for key := range have {
		name, ok := strings.CutPrefix(key, dst.walPrefix())
		if w, err := parseWALName(name); ok && err == nil && w.kind == walSegment && newerSegment(name, rep.NewestWAL) {
			rep.NewestWAL = name
		}
		if id, ok := strings.CutPrefix(key, dst.backupsPrefix()); ok && strings.HasSuffix(id, "/"+manifestName) {
			if id = strings.TrimSuffix(id, "/"+manifestName); id > rep.NewestBackup {
				rep.NewestBackup = id
			}
		}
	}
	rep.NewestWALTime = times[rep.NewestWAL]
	if len(ids) > 0 {
		rep.SourceNewestBackup = ids[len(ids)-1]
	}
	rep.Seconds = time.Since(started).Seconds()
	if len(rep.Conflicts) > 0 {
		errs = append(errs, fmt.Errorf("%w: the destination holds other versions of %s", ErrConflict, strings.Join(rep.Conflicts, ", ")))
	}
	if err := errors.Join(errs...); err != nil {
		return rep, fmt.Errorf("copy: %w", err)
	}
	return rep, nil
}

// newerSegment reports whether segment a is later in the WAL than b (""
// being earliest): by position, then timeline.
func newerSegment(a, b string) bool {
	if b == "" {
		return true
	}
	wa, erra := parseWALName(a)
	wb, errb := parseWALName(b)
	if erra != nil || errb != nil {
		return false
	}
	if wa.pos() != wb.pos() {
		return wa.pos() > wb.pos()
	}
	return wa.tli > wb.tli
}

type copyItem struct {
	key  string
	size int64
}

// copyAll copies the items dst lacks with parallel workers, recording what
// it copied in have and rep. done is called per copied object.
func (r *Repo) copyAll(ctx context.Context, dst *Repo, items []copyItem, have map[string]int64, parallel int, rep *CopyReport, done func()) error {
	var todo []copyItem
	for _, it := range items {
		if size, ok := have[it.key]; ok {
			if size != it.size {
				rep.Conflicts = append(rep.Conflicts, it.key)
			} else {
				rep.Present++
			}
			continue
		}
		todo = append(todo, it)
	}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	work := make(chan copyItem)
	for range min(parallel, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for it := range work {
				err := r.store.Copy(ctx, dst.store, it.key)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					have[it.key] = it.size
					rep.Objects++
					rep.Bytes += it.size
					if done != nil {
						done()
					}
				}
				mu.Unlock()
			}
		}()
	}
	for _, it := range todo {
		select {
		case work <- it:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
