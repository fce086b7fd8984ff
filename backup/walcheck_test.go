package backup

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// archive builds a WAL listing: segment (tli, seg) archived at minute seg
// past t0 (16 MiB segments).
func archive(files ...[2]int) []walEntry {
	var out []walEntry
	for _, f := range files {
		name := segFileName(uint32(f[0]), uint64(f[1]), 16<<20)
		w, _ := parseWALName(name)
		out = append(out, walEntry{walName: w, modTime: t0.Add(time.Duration(f[1]) * time.Minute)})
	}
	return out
}

var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func segs(tli, from, to int, skip ...int) [][2]int {
	var out [][2]int
next:
	for s := from; s <= to; s++ {
		for _, k := range skip {
			if s == k {
				continue next
			}
		}
		out = append(out, [2]int{tli, s})
	}
	return out
}

func cat(parts ...[][2]int) [][2]int {
	var out [][2]int
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestPlanWAL(t *testing.T) {
	const seg = 16 << 20
	at := func(s int, off int) lifeline.LSN { return lifeline.LSN(s*seg + off) }
	// A backup from segment 2 to 3, on timeline 1.
	b := &Info{ID: "b", WALSegmentSize: seg, Timeline: 1, StopTimeline: 1, StartLSN: at(2, 0x28), StopLSN: at(3, 0x100)}
	tl1 := []tlRange{{tli: 1}}
	// Timeline 2 forked from 1 in segment 5.
	tl2 := []tlRange{{tli: 1, end: at(5, 0x800000)}, {tli: 2, begin: at(5, 0x800000)}}
	now := t0.Add(24 * time.Hour)

	for _, tc := range []struct {
		name   string
		files  [][2]int
		chain  []tlRange
		target Target
		last   string // want plan.last
		latest bool   // the target became latest
		err    string // want an error containing this
	}{
		{name: "latest", files: segs(1, 1, 8), chain: tl1, target: Target{Latest: true}, last: "000000010000000000000008"},
		{name: "latest over a gap", files: segs(1, 2, 8, 5), chain: tl1, target: Target{Latest: true}, err: "segment 000000010000000000000005 is missing"},
		{name: "WAL before the backup does not matter", files: segs(1, 2, 8), chain: tl1, target: Target{Latest: true}, last: "000000010000000000000008"},
		{name: "archive ends inside the backup", files: segs(1, 2, 2), chain: tl1, target: Target{Latest: true}, err: "needed to make backup b consistent"},
		{name: "lsn before a later gap", files: segs(1, 2, 9, 7), chain: tl1, target: Target{LSN: at(5, 10)}, last: "000000010000000000000005"},
		{name: "lsn after a gap", files: segs(1, 2, 9, 4), chain: tl1, target: Target{LSN: at(5, 10)}, err: "000000010000000000000004 is missing"},
		{name: "lsn past the archive", files: segs(1, 2, 6), chain: tl1, target: Target{LSN: at(9, 0)}, last: "000000010000000000000006", latest: true},
		// Segment k is archived at minute k: a target at 5m30s needs segment 6.
		{name: "time before a later gap", files: segs(1, 2, 9, 8), chain: tl1, target: Target{Time: t0.Add(5*time.Minute + 30*time.Second)}, last: "000000010000000000000006"},
		{name: "time after a gap", files: segs(1, 2, 9, 5), chain: tl1, target: Target{Time: t0.Add(7*time.Minute + 30*time.Second)}, err: "000000010000000000000005 is missing"},
		{name: "time after the newest segment", files: segs(1, 2, 6), chain: tl1, target: Target{Time: t0.Add(time.Hour)}, last: "000000010000000000000006", latest: true},
		{name: "time in the future", files: segs(1, 2, 6), chain: tl1, target: Target{Time: now.Add(time.Minute)}, last: "000000010000000000000006", latest: true},
		{name: "new timeline", files: cat(segs(1, 1, 6), segs(2, 5, 8)), chain: tl2, target: Target{Latest: true}, last: "000000020000000000000008"},
		{name: "the fork segment may come from the old timeline", files: cat(segs(1, 1, 5), segs(2, 6, 8)), chain: tl2, target: Target{Latest: true}, last: "000000020000000000000008"},
		{name: "old timeline does not fill a gap after the fork", files: cat(segs(1, 1, 9), segs(2, 5, 8, 6)), chain: tl2, target: Target{Latest: true},
			err: "000000020000000000000006 is missing"},
		{name: "backup not on the history", files: segs(3, 2, 8), chain: []tlRange{{tli: 3}}, target: Target{Latest: true}, err: "not in the history of timeline 3"},
		{name: "backup after the fork", files: cat(segs(1, 1, 6), segs(2, 5, 8)), chain: []tlRange{{tli: 1, end: at(3, 0)}, {tli: 2, begin: at(3, 0)}},
			target: Target{Latest: true}, err: "forked from it earlier"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := planWAL(archive(tc.files...), tc.chain, b, tc.target, now)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("planWAL: %v, want an error containing %q", err, tc.err)
				}
				if strings.Contains(tc.err, "missing") && !errors.Is(err, ErrWALGap) {
					t.Errorf("planWAL: %v does not wrap ErrWALGap", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("planWAL: %v", err)
			}
			if p.last != tc.last {
				t.Errorf("last segment %s, want %s", p.last, tc.last)
			}
			if p.target.Latest != tc.latest && !tc.target.Latest {
				t.Errorf("target became %s, want latest=%v", p.target, tc.latest)
			}
			if tc.latest && len(p.notes) == 0 {
				t.Errorf("no note says the target became latest")
			}
			w, _ := parseWALName(p.last)
			if p.lastStart != segStart(segNoOf(w, seg), seg) {
				t.Errorf("lastStart %s for %s", p.lastStart, p.last)
			}
		})
	}
}

func TestNewestTimeline(t *testing.T) {
	hist := func(tlis ...uint32) []walEntry {
		var out []walEntry
		for _, tli := range tlis {
			w, _ := parseWALName(historyName(tli))
			out = append(out, walEntry{walName: w})
		}
		return out
	}
	for _, tc := range []struct {
		have  []uint32
		start uint32
		want  uint32
	}{
		{nil, 1, 1},
		{[]uint32{2, 3}, 1, 3},
		{[]uint32{2, 4}, 1, 2}, // PostgreSQL stops probing at the first missing one
		{[]uint32{2, 3}, 2, 3},
	} {
		if got := newestTimeline(hist(tc.have...), tc.start); got != tc.want {
			t.Errorf("newestTimeline(%v, %d) = %d, want %d", tc.have, tc.start, got, tc.want)
		}
	}
}
