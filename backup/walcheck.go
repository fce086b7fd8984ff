package backup

import (
	"context"
	"fmt"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// walPlan is what the archive promises a restore: the timeline recovery will
// follow and the last segment it must be able to read.
type walPlan struct {
	timeline  uint32
	last      string       // last segment recovery needs (for latest: the end of the archive)
	lastStart lifeline.LSN // its first LSN
	target    Target       // the effective target (latest when the requested one is past the archive)
	notes     []string
}

// tlRange is a timeline's stretch of WAL in the history recovery follows.
type tlRange struct {
	tli        uint32
	begin, end lifeline.LSN // end 0: open (the newest timeline)
}

// newestTimeline mirrors PostgreSQL's findNewestTimeLine: starting at tli,
// the highest timeline reachable through consecutively numbered history
// files in the archive.
func newestTimeline(entries []walEntry, tli uint32) uint32 {
	have := map[uint32]bool{}
	for _, e := range entries {
		if e.kind == walHistory {
			have[e.tli] = true
		}
	}
	for have[tli+1] {
		tli++
	}
	return tli
}

// chainFor turns the newest timeline's history into the ranges recovery
// follows: the timelines of the history, then the newest, open-ended.
func chainFor(newest uint32, hist []historyEntry) []tlRange {
	var out []tlRange
	var begin lifeline.LSN
	for _, h := range hist {
		out = append(out, tlRange{tli: h.tli, begin: begin, end: h.end})
		begin = h.end
	}
	return append(out, tlRange{tli: newest, begin: begin})
}

// planWAL checks, from a listing of the archive, that recovery from backup b
// can reach target t without running into a missing segment, and works out
// the effective target. chain is the timeline history recovery will follow
// (chainFor); now is the current time.
//
// For a latest restore every segment from the backup's start to the newest
// segment of the followed history must be there. For an LSN target, up to
// the segment holding the LSN. For a time target, up to the first segment
// archived after the target time (every record written before the target is
// in it or before it). A target past the end of the archive (a time after
// the newest segment was archived, or in the future; an LSN beyond the newest
// segment) becomes latest, with a note: recovery then replays all there is.
func planWAL(entries []walEntry, chain []tlRange, b *Info, t Target, now time.Time) (walPlan, error) {
	seg := b.WALSegmentSize
	p := walPlan{timeline: chain[len(chain)-1].tli, target: t}

	// The backup must lie on the followed history.
	var onChain bool
	for _, c := range chain {
		if c.tli == b.StopTimeline {
			onChain = true
			if c.end != 0 && b.StopLSN > c.end {
				return p, fmt.Errorf("backup %s ends at %s on timeline %d, but timeline %d (the newest in the archive) forked from it earlier, at %s: "+
					"the backup cannot be recovered along that timeline", b.ID, b.StopLSN, b.StopTimeline, p.timeline, c.end)
			}
		}
	}
	if !onChain {
		return p, fmt.Errorf("backup %s is on timeline %d, which is not in the history of timeline %d, the newest in the archive", b.ID, b.StopTimeline, p.timeline)
	}

	type fileAt struct {
		tli uint32
		seg uint64
	}
	have := map[fileAt]time.Time{}
	for _, e := range entries {
		if e.kind == walSegment {
			have[fileAt{e.tli, segNoOf(e.walName, seg)}] = e.modTime
		}
	}
	// serving returns the file recovery reads for segment k, newest timeline
	// first, as XLogFileReadAnyTLI does; tli is the timeline it would be
	// expected on when it is missing.
	serving := func(k uint64) (tli uint32, mod time.Time, ok bool) {
		for i := len(chain) - 1; i >= 0; i-- {
			c := chain[i]
			if segNo(c.begin, seg) > k || (c.end != 0 && k > segNo(c.end, seg)) {
				continue
			}
			if tli == 0 {
				tli = c.tli
			}
			if m, found := have[fileAt{c.tli, k}]; found {
				return c.tli, m, true
			}
		}
		return tli, time.Time{}, false
	}

	start := segNo(b.StartLSN, seg)
	stop := lastSegment(b.StartLSN, b.StopLSN, seg)
	// The end of the archive along the chain, and when its newest segment was archived.
	var maxSeg uint64
	var newest time.Time
	found := false
	for f, m := range have {
		if f.seg < start {
			continue
		}
		if tli, _, ok := serving(f.seg); !ok || tli != f.tli {
			continue
		}
		if !found || f.seg > maxSeg {
			maxSeg, found = f.seg, true
		}
		if m.After(newest) {
			newest = m
		}
	}
	if !found || maxSeg < stop {
		missing := stop
		if found {
			missing = maxSeg + 1
		}
		tli, _, _ := serving(missing)
		return p, fmt.Errorf("%w: segment %s, needed to make backup %s consistent, is not in the archive",
			ErrWALGap, segFileName(tli, missing, seg), b.ID)
	}

	end := maxSeg
	switch {
	case t.Latest:
	case t.LSN != 0:
		if k := segNo(t.LSN, seg); k > maxSeg {
			p.notes = append(p.notes, fmt.Sprintf("target LSN %s is past the end of the archive (last segment %s ends at %s): recovering everything archived (latest)",
				t.LSN, segFileName(p.timeline, maxSeg, seg), segStart(maxSeg+1, seg)))
			p.target = Target{Latest: true}
		} else {
			end = max(k, stop)
		}
	default:
		switch {
		case t.Time.After(now):
			p.notes = append(p.notes, fmt.Sprintf("target time %s is in the future: recovering everything archived (latest)", t.Time.Format(time.RFC3339)))
			p.target = Target{Latest: true}
		case !t.Time.Before(newest):
			p.notes = append(p.notes, fmt.Sprintf("target time %s is after the newest WAL segment was archived (%s): recovering everything archived (latest)",
				t.Time.Format(time.RFC3339), newest.Format(time.RFC3339)))
			p.target = Target{Latest: true}
		default:
			for k := start; k <= maxSeg; k++ {
				if _, m, ok := serving(k); ok && m.After(t.Time) {
					end = max(k, stop)
					break
				}
			}
		}
	}
	for k := start; k <= end; k++ {
		if tli, _, ok := serving(k); !ok {
			reach := segStart(k, seg)
			return p, fmt.Errorf("%w: segment %s is missing, but later WAL is archived (up to %s): recovery from backup %s would stop at %s, before the target",
				ErrWALGap, segFileName(tli, k, seg), segFileName(p.timeline, maxSeg, seg), b.ID, reach)
		}
	}
	tli, _, _ := serving(end)
	p.last, p.lastStart = segFileName(tli, end, seg), segStart(end, seg)
	return p, nil
}

// walChain lists the archive and reads the newest timeline's history.
func (r *Repo) walChain(ctx context.Context, b *Info) ([]walEntry, []tlRange, error) {
	entries, err := r.listWAL(ctx)
	if err != nil {
		return nil, nil, err
	}
	newest := newestTimeline(entries, b.Timeline)
	var hist []historyEntry
	if newest > 1 {
		name := historyName(newest)
		body, err := r.readSmall(ctx, r.walKey(name), 16<<20)
		if err != nil {
			return nil, nil, fmt.Errorf("read timeline history: %w", err)
		}
		if hist, err = parseHistory(body); err != nil {
			return nil, nil, fmt.Errorf("%s: %w: %v", r.walKey(name), ErrCorrupt, err)
		}
		for _, h := range hist {
			if h.tli >= newest {
				return nil, nil, fmt.Errorf("%s: %w: lists timeline %d, not older than %d", r.walKey(name), ErrCorrupt, h.tli, newest)
			}
		}
	}
	return entries, chainFor(newest, hist), nil
}
