package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
)

// label is what Lifeline reads from a base backup's backup_label.
type label struct {
	StartLSN      lifeline.LSN
	StartWAL      string // the segment named on the START WAL LOCATION line
	Checkpoint    lifeline.LSN
	Timeline      uint32
	From          string // "primary" or "standby"
	StartTimeText string // START TIME as written, in the server's log_timezone
	StartTime     time.Time
	StartTimeOK   bool // the zone of START TIME was understood
}

var startWALRe = regexp.MustCompile(`^([0-9A-F]+/[0-9A-F]+) \(file ([0-9A-F]{24})\)$`)

// parseLabel parses a backup_label file (PostgreSQL 15 layout):
//
//	START WAL LOCATION: 0/2000028 (file 000000010000000000000002)
//	CHECKPOINT LOCATION: 0/2000060
//	BACKUP METHOD: streamed
//	BACKUP FROM: primary
//	START TIME: 2026-11-25 10:35:08 UTC
//	LABEL: pg_basebackup base backup
//	START TIMELINE: 1
//
// START WAL LOCATION, CHECKPOINT LOCATION and START TIMELINE are required,
// and the segment must be on START TIMELINE.
func parseLabel(b []byte) (label, error) {
	var l label
	seen := map[string]bool{}
	for n, line := range strings.Split(string(b), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			return label{}, fmt.Errorf("backup_label line %d: no \"KEY: value\"", n+1)
		}
		if seen[k] {
			return label{}, fmt.Errorf("backup_label line %d: %s repeated", n+1, k)
		}
		seen[k] = true
		switch k {
		case "START WAL LOCATION":
			m := startWALRe.FindStringSubmatch(v)
			if m == nil {
				return label{}, fmt.Errorf("backup_label: START WAL LOCATION %q: want \"X/Y (file NAME)\"", v)
			}
			lsn, err := lifeline.ParseLSN(m[1])
			if err != nil {
				return label{}, fmt.Errorf("backup_label: START WAL LOCATION: %w", err)
			}
			l.StartLSN, l.StartWAL = lsn, m[2]
		case "CHECKPOINT LOCATION":
			lsn, err := lifeline.ParseLSN(v)
			if err != nil {
				return label{}, fmt.Errorf("backup_label: CHECKPOINT LOCATION: %w", err)
			}
			l.Checkpoint = lsn
		case "START TIMELINE":
			tli, err := strconv.ParseUint(v, 10, 32)
			if err != nil || tli == 0 {
				return label{}, fmt.Errorf("backup_label: START TIMELINE %q is not a timeline", v)
			}
			l.Timeline = uint32(tli)
		case "BACKUP FROM":
			l.From = v
		case "START TIME":
			l.StartTimeText = v
			l.StartTime, l.StartTimeOK = parseLabelTime(v)
		}
	}
	for _, k := range []string{"START WAL LOCATION", "CHECKPOINT LOCATION", "START TIMELINE"} {
		if !seen[k] {
			return label{}, fmt.Errorf("backup_label: no %s", k)
		}
	}
	w, err := parseWALName(l.StartWAL)
	if err != nil || w.kind != walSegment {
		return label{}, fmt.Errorf("backup_label: START WAL LOCATION names %q, not a segment", l.StartWAL)
	}
	if w.tli != l.Timeline {
		return label{}, fmt.Errorf("backup_label: START WAL LOCATION segment %s is on timeline %d, START TIMELINE says %d", l.StartWAL, w.tli, l.Timeline)
	}
	if l.Checkpoint < l.StartLSN {
		return label{}, fmt.Errorf("backup_label: CHECKPOINT LOCATION %s is before START WAL LOCATION %s", l.Checkpoint, l.StartLSN)
	}
	return l, nil
}

// parseLabelTime parses START TIME. PostgreSQL writes it in log_timezone with
// %Z, which is an abbreviation Go cannot map to an offset in general ("CET"),
// so only UTC/GMT and numeric offsets ("+03", "-05:30") count as understood.
func parseLabelTime(v string) (time.Time, bool) {
	i := strings.LastIndexByte(v, ' ')
	if i < 0 {
		return time.Time{}, false
	}
	stamp, zone := v[:i], v[i+1:]
	t, err := time.Parse("2006-01-02 15:04:05", stamp)
	if err != nil {
		return time.Time{}, false
	}
	switch {
	case zone == "UTC" || zone == "GMT" || zone == "Z":
		return t.UTC(), true
	case len(zone) >= 3 && (zone[0] == '+' || zone[0] == '-'):
		d := strings.ReplaceAll(zone[1:], ":", "")
		var h, m int
		switch len(d) {
		case 2:
			h, err = strconv.Atoi(d)
		case 4:
			h, err = strconv.Atoi(d[:2])
			if err == nil {
				m, err = strconv.Atoi(d[2:])
			}
		default:
			return time.Time{}, false
		}
		if err != nil || h > 15 || m > 59 {
			return time.Time{}, false
		}
		off := time.Duration(h)*time.Hour + time.Duration(m)*time.Minute
		if zone[0] == '-' {
			off = -off
		}
		return t.Add(-off).UTC(), true
	}
	return time.Time{}, false
}

// pgManifest is the part of PostgreSQL's backup_manifest Lifeline uses.
type pgManifest struct {
	Version int              `json:"PostgreSQL-Backup-Manifest-Version"`
	Files   []pgManifestFile `json:"Files"`
	WAL     []walRange       `json:"WAL-Ranges"`
	Sum     string           `json:"Manifest-Checksum"`
}

type pgManifestFile struct {
	Path      string `json:"Path"`
	Size      int64  `json:"Size"`
	Algorithm string `json:"Checksum-Algorithm"`
	Checksum  string `json:"Checksum"`
}

type walRange struct {
	Timeline uint32 `json:"Timeline"`
	Start    string `json:"Start-LSN"`
	End      string `json:"End-LSN"`

	start, end lifeline.LSN
}

// parsePGManifest parses and checks a backup_manifest: its own SHA-256 (which
// covers everything up to the line holding "Manifest-Checksum", as
// pg_verifybackup computes it), version 1, and WAL ranges that are ordered,
// on increasing timelines, and non-empty.
func parsePGManifest(b []byte) (*pgManifest, error) {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, errors.New("backup_manifest: last line not newline-terminated")
	}
	last := bytes.LastIndexByte(b[:len(b)-1], '\n')
	if last < 0 {
		return nil, errors.New("backup_manifest: expected at least 2 lines")
	}
	var m pgManifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("backup_manifest: %w", err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("backup_manifest: version %d, want 1", m.Version)
	}
	sum := sha256.Sum256(b[:last+1])
	if got := hex.EncodeToString(sum[:]); !strings.EqualFold(got, m.Sum) {
		return nil, fmt.Errorf("backup_manifest: checksum mismatch: computed %s, manifest says %q", got, m.Sum)
	}
	if len(m.WAL) == 0 {
		return nil, errors.New("backup_manifest: no WAL-Ranges")
	}
	for i := range m.WAL {
		r := &m.WAL[i]
		var err error
		if r.start, err = lifeline.ParseLSN(r.Start); err != nil {
			return nil, fmt.Errorf("backup_manifest: WAL range %d: Start-LSN: %w", i, err)
		}
		if r.end, err = lifeline.ParseLSN(r.End); err != nil {
			return nil, fmt.Errorf("backup_manifest: WAL range %d: End-LSN: %w", i, err)
		}
		if r.Timeline == 0 || r.end < r.start {
			return nil, fmt.Errorf("backup_manifest: WAL range %d: timeline %d from %s to %s", i, r.Timeline, r.Start, r.End)
		}
		// pg_basebackup lists the ranges newest timeline first; keep any
		// order but require that they chain.
	}
	seen := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		if f.Path == "" || f.Size < 0 {
			return nil, fmt.Errorf("backup_manifest: bad file entry %q size %d", f.Path, f.Size)
		}
		if seen[f.Path] {
			return nil, fmt.Errorf("backup_manifest: %s listed twice", f.Path)
		}
		seen[f.Path] = true
	}
	return &m, nil
}

// walSpan returns the backup's WAL ranges oldest first: the WAL that
// recovery must replay to make the backup consistent.
func (m *pgManifest) walSpan() []walRange {
	out := append([]walRange(nil), m.WAL...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Timeline < out[j-1].Timeline; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// checkSpan checks that the ranges chain from the label's start: the first
// starts at the backup's start LSN on its timeline, each next one on a
// higher timeline where the previous one ended.
func checkSpan(span []walRange, l label) error {
	if span[0].Timeline != l.Timeline || span[0].start != l.StartLSN {
		return fmt.Errorf("backup_manifest WAL starts at %s on timeline %d, backup_label at %s on timeline %d",
			span[0].start, span[0].Timeline, l.StartLSN, l.Timeline)
	}
	for i := 1; i < len(span); i++ {
		if span[i].Timeline <= span[i-1].Timeline || span[i].start != span[i-1].end {
			return fmt.Errorf("backup_manifest WAL ranges do not chain: timeline %d ends at %s, timeline %d starts at %s",
				span[i-1].Timeline, span[i-1].end, span[i].Timeline, span[i].start)
		}
	}
	return nil
}

// controlSystemID reads the database system identifier from the start of
// global/pg_control (a uint64 in the server's byte order; only little-endian
// servers are supported, which is every platform PostgreSQL ships binaries for
// today).
func controlSystemID(b []byte) (uint64, error) {
	if len(b) < 16 {
		return 0, fmt.Errorf("pg_control: %d bytes, too short", len(b))
	}
	return binary.LittleEndian.Uint64(b[:8]), nil
}
