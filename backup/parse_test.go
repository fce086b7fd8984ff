package backup

// Tests of the unexported parsers live inside the package; everything else is
// tested through the API in package backup_test.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/lifeline-dr/lifeline"
)

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/pg15/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseLabel(t *testing.T) {
	got, err := parseLabel(readTestdata(t, "backup_label"))
	if err != nil {
		t.Fatal(err)
	}
	want := label{
		StartLSN: 0x2000028, StartWAL: "000000010000000000000002", Checkpoint: 0x2000060, Timeline: 1,
		From: "primary", StartTimeText: "2026-11-25 10:35:08 UTC",
		StartTime: time.Date(2026, 11, 25, 10, 35, 8, 0, time.UTC), StartTimeOK: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseLabel (-want +got):\n%s", diff)
	}

	good := string(readTestdata(t, "backup_label"))
	bad := []struct{ name, text, err string }{
		{"empty", "", "no START WAL LOCATION"},
		{"no timeline", strings.Replace(good, "START TIMELINE: 1\n", "", 1), "no START TIMELINE"},
		{"timeline mismatch", strings.Replace(good, "START TIMELINE: 1", "START TIMELINE: 2", 1), "is on timeline 1"},
		{"bad lsn", strings.Replace(good, "0/2000028 (", "0/zz (", 1), "START WAL LOCATION"},
		{"no file", strings.Replace(good, " (file 000000010000000000000002)", "", 1), "START WAL LOCATION"},
		{"checkpoint before start", strings.Replace(good, "CHECKPOINT LOCATION: 0/2000060", "CHECKPOINT LOCATION: 0/1000000", 1), "before START WAL LOCATION"},
		{"repeated", good + "START TIMELINE: 1\n", "repeated"},
		{"garbage line", good + "hello\n", "KEY: value"},
		{"timeline zero", strings.Replace(good, "START TIMELINE: 1", "START TIMELINE: 0", 1), "not a timeline"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseLabel([]byte(tc.text))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseLabel: %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

func TestParseLabelTime(t *testing.T) {
	base := time.Date(2026, 11, 25, 10, 35, 8, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-11-25 10:35:08 UTC", base, true},
		{"2026-11-25 10:35:08 GMT", base, true},
		{"2026-11-25 13:35:08 +03", base, true},
		{"2026-11-25 05:05:08 -05:30", base, true},
		{"2026-11-25 11:35:08 CET", time.Time{}, false},
		{"2026-11-25 11:35:08", time.Time{}, false},
		{"yesterday UTC", time.Time{}, false},
		{"2026-11-25 11:35:08 +99", time.Time{}, false},
	} {
		got, ok := parseLabelTime(tc.in)
		if ok != tc.ok || !got.Equal(tc.want) {
			t.Errorf("parseLabelTime(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// The fixture was accepted by PostgreSQL 15's pg_verifybackup, so its
// checksum is computed the way PostgreSQL computes it.
func TestParsePGManifest(t *testing.T) {
	good := readTestdata(t, "backup_manifest")
	m, err := parsePGManifest(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) != 1 || m.Files[0].Path != "backup_label" || m.Files[0].Size != 225 {
		t.Errorf("files = %+v", m.Files)
	}
	l, _ := parseLabel(readTestdata(t, "backup_label"))
	if err := checkSpan(m.walSpan(), l); err != nil {
		t.Errorf("checkSpan: %v", err)
	}
	if r := m.walSpan()[0]; r.start != 0x2000028 || r.end != 0x2000100 || r.Timeline != 1 {
		t.Errorf("WAL range = %+v", r)
	}

	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		err  string
	}{
		{"flipped byte", func(b []byte) []byte { return bytes.Replace(b, []byte(`"Size": 225`), []byte(`"Size": 226`), 1) }, "checksum mismatch"},
		{"no final newline", func(b []byte) []byte { return b[:len(b)-1] }, "newline"},
		{"one line", func([]byte) []byte { return []byte("{}\n") }, "2 lines"},
		{"not json", func([]byte) []byte { return []byte("hello\nworld\n") }, "backup_manifest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePGManifest(tc.edit(bytes.Clone(good)))
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parsePGManifest: %v, want an error containing %q", err, tc.err)
			}
		})
	}
}

// manifestWith builds a backup_manifest with a correct checksum.
func manifestWith(files, ranges string) []byte {
	body := fmt.Sprintf("{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [%s],\n\"WAL-Ranges\": [%s],\n", files, ranges)
	sum := sha256.Sum256([]byte(body))
	return []byte(body + fmt.Sprintf("\"Manifest-Checksum\": \"%s\"}\n", hex.EncodeToString(sum[:])))
}

func TestCheckSpan(t *testing.T) {
	l := label{StartLSN: 0x2000028, Timeline: 1}
	for _, tc := range []struct {
		name   string
		ranges string
		err    string
	}{
		{"one", `{"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/3000100"}`, ""},
		{"switch during backup (newest first, as pg_basebackup writes)",
			`{"Timeline": 2, "Start-LSN": "0/2800000", "End-LSN": "0/3000100"}, {"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2800000"}`, ""},
		{"other start", `{"Timeline": 1, "Start-LSN": "0/2000000", "End-LSN": "0/3000100"}`, "backup_label at 0/2000028"},
		{"other timeline", `{"Timeline": 2, "Start-LSN": "0/2000028", "End-LSN": "0/3000100"}`, "on timeline 1"},
		{"broken chain",
			`{"Timeline": 2, "Start-LSN": "0/2900000", "End-LSN": "0/3000100"}, {"Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2800000"}`, "do not chain"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := parsePGManifest(manifestWith("", tc.ranges))
			if err != nil {
				t.Fatal(err)
			}
			err = checkSpan(m.walSpan(), l)
			if (tc.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("checkSpan: %v, want %q", err, tc.err)
			}
		})
	}
}

func TestNeededSegments(t *testing.T) {
	const seg = 16 << 20
	for _, tc := range []struct {
		name string
		span []walRange
		want []string
	}{
		{"one segment", []walRange{{Timeline: 1, start: 0x2000028, end: 0x2000100}}, []string{"000000010000000000000002"}},
		{"ends on a boundary", []walRange{{Timeline: 1, start: 0x2000028, end: 0x4000000}},
			[]string{"000000010000000000000002", "000000010000000000000003"}},
		{"timeline switch", []walRange{{Timeline: 1, start: 0x2000028, end: 0x3800000}, {Timeline: 2, start: 0x3800000, end: 0x4000100}},
			[]string{"000000010000000000000002", "000000020000000000000003", "000000020000000000000004"}},
	} {
		if diff := cmp.Diff(tc.want, neededSegments(tc.span, seg)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestParseWALName(t *testing.T) {
	for _, tc := range []struct {
		in   string
		kind walKind
		tli  uint32
		pos  uint64
		ok   bool
	}{
		{"000000010000000000000003", walSegment, 1, 3, true},
		{"0000000A00000001000000FF", walSegment, 10, 1<<32 | 0xFF, true},
		{"00000002.history", walHistory, 2, 0, true},
		{"000000010000000000000003.00000028.backup", walBackup, 1, 3, true},
		{"000000010000000000000003.partial", walPartial, 1, 3, true},
		{"000000000000000000000003", 0, 0, 0, false},
		{"00000000.history", 0, 0, 0, false},
		{"00000001000000000000000g", 0, 0, 0, false},
		{"000000010000000000000003.tmp", 0, 0, 0, false},
		{"../00000001000000000000003", 0, 0, 0, false},
		{"000000010000000000000003/x", 0, 0, 0, false},
		{"00000001000000000000000a", 0, 0, 0, false}, // lower case is not PostgreSQL's
		{"RECOVERYXLOG", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		w, err := parseWALName(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("parseWALName(%q): %v, want ok %v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (w.kind != tc.kind || w.tli != tc.tli || w.pos() != tc.pos) {
			t.Errorf("parseWALName(%q) = %+v", tc.in, w)
		}
	}
	for _, size := range []int64{1 << 20, 16 << 20, 1 << 30} {
		for _, seg := range []uint64{0, 1, 255, 256, 4096, 1 << 20} {
			name := segFileName(7, seg, size)
			w, err := parseWALName(name)
			if err != nil || segNoOf(w, size) != seg || w.tli != 7 {
				t.Errorf("segFileName(7, %d, %d) = %s, parsed back as %+v, %v", seg, size, name, w, err)
			}
		}
	}
}

func TestParseHistory(t *testing.T) {
	got, err := parseHistory([]byte("1\t0/3000060\tno recovery target specified\n\n# comment\n3\t0/5000000\tat restore point \"x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []historyEntry{{tli: 1, end: 0x3000060}, {tli: 3, end: 0x5000000}}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(historyEntry{})); diff != "" {
		t.Errorf("parseHistory (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"x\t0/1\n", "1\n", "2\t0/5\n1\t0/6\n", "1\t0/6\n2\t0/5\n", "0\t0/1\n", "1\tzz\n"} {
		if _, err := parseHistory([]byte(bad)); err == nil {
			t.Errorf("parseHistory(%q) accepted", bad)
		}
	}
}

func testInfo() Info {
	return Info{
		ID: "20261125T101500Z", Workload: "orders", Node: "eu-west/a", SystemID: 7312345678901234567,
		PGVersion: "15.14", WALSegmentSize: 16 << 20, Timeline: 1, StopTimeline: 1,
		StartLSN: 0x2000028, StopLSN: 0x2000100, StartWAL: "000000010000000000000002", StopWAL: "000000010000000000000002",
		StartTime: time.Date(2026, 11, 25, 10, 15, 0, 0, time.UTC), StopTime: time.Date(2026, 11, 25, 10, 15, 3, 500, time.UTC),
		From: "primary", Bytes: 30, StoredBytes: 200, Files: 900,
		Parts: []Part{
			{Name: "part-00000", Size: 20, StoredSize: 120, SHA256: strings.Repeat("ab", 32)},
			{Name: "part-00001", Size: 10, StoredSize: 80, SHA256: strings.Repeat("cd", 32)},
		},
		Duration: 3500 * time.Millisecond, Encrypted: true,
	}
}

func TestInfo_JSON(t *testing.T) {
	in := testInfo()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"start_lsn":"0/2000028"`, `"system_identifier":"7312345678901234567"`, `"key":"part-00000"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("manifest.json lacks %s:\n%s", want, b)
		}
	}
	var out Info
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("round trip (-in +out):\n%s", diff)
	}
	for _, tc := range []struct {
		name string
		edit func(*Info)
	}{
		{"parts do not add up", func(i *Info) { i.Bytes++ }},
		{"bad part name", func(i *Info) { i.Parts[0].Name = "../x" }},
		{"repeated part", func(i *Info) { i.Parts[1].Name = i.Parts[0].Name }},
		{"bad sha", func(i *Info) { i.Parts[0].SHA256 = "zz" }},
		{"stop before start", func(i *Info) { i.StopLSN = 1 }},
		{"segment on another timeline", func(i *Info) { i.StopWAL = "000000020000000000000002" }},
		{"bad segment size", func(i *Info) { i.WALSegmentSize = 1000 }},
		{"bad id", func(i *Info) { i.ID = "latest" }},
		{"no parts", func(i *Info) { i.Parts, i.Bytes = nil, 0 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			i := testInfo()
			i.Parts = append([]Part(nil), i.Parts...)
			tc.edit(&i)
			b, err := json.Marshal(i)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseInfo(b); err == nil {
				t.Errorf("parseInfo accepted %s", b)
			}
		})
	}
}

func TestCheckSegmentHeader(t *testing.T) {
	const size = 16 << 20
	w, _ := parseWALName("000000010000000100000003")
	hdr := segmentHeader(size, segStart(segNoOf(w, size), size))
	if err := checkSegmentHeader(bytes.NewReader(hdr), w, size); err != nil {
		t.Errorf("valid header: %v", err)
	}
	other, _ := parseWALName("000000010000000100000004")
	if err := checkSegmentHeader(bytes.NewReader(hdr), other, size); err == nil {
		t.Errorf("header of segment 3 accepted for segment 4")
	}
	if err := checkSegmentHeader(bytes.NewReader(hdr), w, size/2); err == nil {
		t.Errorf("header accepted for a file of another size")
	}
}

// segmentHeader is the start of a WAL segment's first page.
func segmentHeader(size int64, addr lifeline.LSN) []byte {
	b := make([]byte, 40)
	b[0], b[1] = 0x10, 0xD1 // XLOG_PAGE_MAGIC of PostgreSQL 15
	b[2] = 0x02             // XLP_LONG_HEADER
	b[4] = 1
	for i := range 8 {
		b[8+i] = byte(uint64(addr) >> (8 * i))
	}
	for i := range 4 {
		b[32+i] = byte(uint32(size) >> (8 * i))
		b[36+i] = byte(uint32(8192) >> (8 * i))
	}
	return b
}

func FuzzParseLabel(f *testing.F) {
	f.Add(readTestdata(f, "backup_label"))
	f.Add([]byte("START WAL LOCATION: 0/0 (file 000000010000000000000000)\nCHECKPOINT LOCATION: 0/0\nSTART TIMELINE: 1\n"))
	f.Add([]byte("START TIME: 2026-11-25 10:35:08 -05:30\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseLabel(b)
		if err != nil {
			return
		}
		w, err := parseWALName(l.StartWAL)
		if err != nil || w.tli != l.Timeline || l.Checkpoint < l.StartLSN || l.Timeline == 0 {
			t.Fatalf("accepted an inconsistent label: %+v", l)
		}
	})
}

func FuzzParsePGManifest(f *testing.F) {
	f.Add(readTestdata(f, "backup_manifest"))
	f.Add(manifestWith(`{"Path": "a", "Size": 1}`, `{"Timeline": 1, "Start-LSN": "0/1", "End-LSN": "0/2"}`))
	f.Add(manifestWith("", ""))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parsePGManifest(b)
		if err != nil {
			return
		}
		span := m.walSpan()
		if len(span) == 0 {
			t.Fatal("accepted a manifest without WAL ranges")
		}
		for i, r := range span {
			if r.end < r.start || r.Timeline == 0 || (i > 0 && r.Timeline < span[i-1].Timeline) {
				t.Fatalf("accepted WAL ranges %+v", span)
			}
		}
		_ = neededSegments(span, 16<<20)
	})
}

func FuzzParseInfo(f *testing.F) {
	b, _ := json.Marshal(testInfo())
	f.Add(b)
	f.Add([]byte(`{"format":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		i, err := parseInfo(b)
		if err != nil {
			return
		}
		again, err := json.Marshal(*i)
		if err != nil {
			t.Fatal(err)
		}
		j, err := parseInfo(again)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		if diff := cmp.Diff(i, j); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

func FuzzParseWALName(f *testing.F) {
	for _, s := range []string{"000000010000000000000003", "00000002.history", "000000010000000000000003.00000028.backup", "000000010000000000000003.partial", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		w, err := parseWALName(s)
		if err != nil {
			return
		}
		if w.name != s || strings.ContainsAny(s, "/\\") || w.tli == 0 {
			t.Fatalf("accepted %q as %+v", s, w)
		}
		if w.kind == walSegment && segFileName(w.tli, segNoOf(w, 1<<20), 1<<20) != s && w.lo < 4096 {
			t.Fatalf("%q does not round-trip", s)
		}
	})
}

func FuzzParseHistory(f *testing.F) {
	f.Add([]byte("1\t0/3000060\tno recovery target specified\n"))
	f.Add([]byte("# x\n1 0/1\n2 1/0 why\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHistory(b)
		if err != nil {
			return
		}
		for i := 1; i < len(h); i++ {
			if h[i].tli <= h[i-1].tli || h[i].end < h[i-1].end {
				t.Fatalf("accepted history %+v", h)
			}
		}
	})
}
