package backup

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeline-dr/lifeline"
)

// walKind is what a file in the WAL archive is.
type walKind int

const (
	walSegment walKind = iota // 000000010000000000000003
	walHistory                // 00000002.history
	walBackup                 // 000000010000000000000003.00000028.backup (backup history file)
	walPartial                // 000000010000000000000003.partial (last segment of an old timeline)
)

// walName is a parsed WAL archive file name. For everything but history
// files, hi and lo are the segment's "log" and "segment" halves: (hi, lo)
// orders segments without knowing the segment size.
type walName struct {
	name string
	kind walKind
	tli  uint32
	hi   uint32
	lo   uint32
}

// pos orders segments of any timeline by their place in the WAL.
func (w walName) pos() uint64 { return uint64(w.hi)<<32 | uint64(w.lo) }

// segment is the 24-character segment name the file belongs to.
func (w walName) segment() string {
	if w.kind == walHistory {
		return ""
	}
	return w.name[:24]
}

func isUpperHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// errBadWALName is wrapped by parseWALName's errors.
var errBadWALName = errors.New("not a WAL archive file name")

// parseWALName accepts exactly the names PostgreSQL gives archive_command and
// restore_command (%f): a segment, a timeline history file, a backup history
// file or a .partial segment. Nothing else may become an object key.
func parseWALName(name string) (walName, error) {
	bad := fmt.Errorf("%q: %w", name, errBadWALName)
	if len(name) == 16 && strings.HasSuffix(name, ".history") && isUpperHex(name[:8]) {
		tli, _ := strconv.ParseUint(name[:8], 16, 32)
		if tli == 0 {
			return walName{}, bad
		}
		return walName{name: name, kind: walHistory, tli: uint32(tli)}, nil
	}
	if len(name) < 24 || !isUpperHex(name[:24]) {
		return walName{}, bad
	}
	w := walName{name: name, kind: walSegment}
	tli, _ := strconv.ParseUint(name[:8], 16, 32)
	hi, _ := strconv.ParseUint(name[8:16], 16, 32)
	lo, _ := strconv.ParseUint(name[16:24], 16, 32)
	if tli == 0 {
		return walName{}, bad
	}
	w.tli, w.hi, w.lo = uint32(tli), uint32(hi), uint32(lo)
	switch rest := name[24:]; {
	case rest == "":
	case rest == ".partial":
		w.kind = walPartial
	case len(rest) == 16 && rest[0] == '.' && strings.HasSuffix(rest, ".backup") && isUpperHex(rest[1:9]):
		w.kind = walBackup
	default:
		return walName{}, bad
	}
	return w, nil
}

// validSegmentSize reports whether n is a WAL segment size PostgreSQL allows:
// a power of two from 1 MiB to 1 GiB.
func validSegmentSize(n int64) bool {
	return n >= 1<<20 && n <= 1<<30 && n&(n-1) == 0
}

// segNo is the segment number holding lsn.
func segNo(lsn lifeline.LSN, segSize int64) uint64 { return uint64(lsn) / uint64(segSize) }

// segFileName is the name of segment number seg on timeline tli.
func segFileName(tli uint32, seg uint64, segSize int64) string {
	per := uint64(1<<32) / uint64(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, seg/per, seg%per)
}

// segNoOf is the segment number of a parsed segment name.
func segNoOf(w walName, segSize int64) uint64 {
	per := uint64(1<<32) / uint64(segSize)
	return uint64(w.hi)*per + uint64(w.lo)
}

// segStart is the first LSN of segment number seg.
func segStart(seg uint64, segSize int64) lifeline.LSN { return lifeline.LSN(seg * uint64(segSize)) }

// historyName is the name of timeline tli's history file.
func historyName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// historyEntry is one line of a timeline history file: timeline tli ran
// until (but not including) lsn, then the next timeline began.
type historyEntry struct {
	tli uint32
	end lifeline.LSN
}

// parseHistory parses a timeline history file: "parentTLI<TAB>switchpoint<TAB>reason"
// lines, oldest first, with # comments and blank lines ignored (as
// PostgreSQL's readTimeLineHistory does).
func parseHistory(b []byte) ([]historyEntry, error) {
	var out []historyEntry
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 4096), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		f := strings.Fields(s)
		if len(f) < 2 {
			return nil, fmt.Errorf("history line %d: want TIMELINE SWITCHPOINT [REASON]", line)
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil || tli == 0 {
			return nil, fmt.Errorf("history line %d: bad timeline %q", line, f[0])
		}
		lsn, err := lifeline.ParseLSN(f[1])
		if err != nil {
			return nil, fmt.Errorf("history line %d: %w", line, err)
		}
		if n := len(out); n > 0 && (uint32(tli) <= out[n-1].tli || lsn < out[n-1].end) {
			return nil, fmt.Errorf("history line %d: timelines and switchpoints must increase", line)
		}
		out = append(out, historyEntry{tli: uint32(tli), end: lsn})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}
