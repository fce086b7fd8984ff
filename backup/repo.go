package backup

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/objstore"
)

// Sentinel errors. Errors of this package name the operation and the object
// or backup, and wrap one of these where a caller may branch on it.
var (
	// ErrNotFound: the WAL file, backup or object does not exist. FetchWAL
	// returns it only at the end of the archive (see ErrWALGap).
	ErrNotFound = objstore.ErrNotFound
	// ErrConflict: PushWAL found an object of the same name with other content.
	ErrConflict = objstore.ErrConflict
	// ErrCorrupt: an object's stored bytes fail their checks, or a backup's
	// contents do not match its manifests.
	ErrCorrupt = objstore.ErrCorrupt
	// ErrWrongKey: an object is encrypted with another key (or the repository
	// was opened without one).
	ErrWrongKey = objstore.ErrWrongKey
	// ErrNoBackup: no backup can serve the request (an empty repository, or a
	// target before the end of the oldest backup).
	ErrNoBackup = errors.New("no backup for the target")
	// ErrWALGap: a WAL segment that recovery needs is missing while later WAL
	// on the same timeline is in the archive. Recovery must not end there.
	ErrWALGap = errors.New("WAL archive has a gap")
	// ErrRecoveryIncomplete: a restored server ended recovery before the
	// target (or before the end of the archive for a latest restore).
	ErrRecoveryIncomplete = errors.New("recovery ended before the target")
	// ErrNotEmpty: the directory to restore into holds files.
	ErrNotEmpty = errors.New("directory is not empty")
	// ErrVerifyFailed: a restored copy failed a check (Verify).
	ErrVerifyFailed = errors.New("verification failed")
)

// Repo is one workload's part of a backup repository: WAL archive and base
// backups under "<workload>/" in the bucket. It is safe for concurrent use.
type Repo struct {
	store     *objstore.Store
	workload  string
	url       string
	encrypted bool
}

// Open opens the repository at url (a gocloud.dev/blob URL, see
// objstore.Open) for workload. opts carries the encryption key and
// compression level; every Repo that reads the objects needs the same key.
//
// A file:// repository is written by archive_command, which runs as the
// PostgreSQL OS user: that user must be able to create files under
// <dir>/<workload>/wal/ (create the directory and chown it when the caller
// runs as root).
func Open(ctx context.Context, url string, opts objstore.Options, workload string) (*Repo, error) {
	if err := checkWorkload(workload); err != nil {
		return nil, err
	}
	s, err := objstore.Open(ctx, url, opts)
	if err != nil {
		return nil, err
	}
	return &Repo{store: s, workload: workload, url: s.String(), encrypted: len(opts.Key) != 0}, nil
}

func checkWorkload(w string) error {
	if w == "" || w == "." || w == ".." {
		return fmt.Errorf("workload %q: want a name of letters, digits, '.', '_' and '-'", w)
	}
	for _, c := range w {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("workload %q: want a name of letters, digits, '.', '_' and '-'", w)
		}
	}
	return nil
}

// Close releases the repository.
func (r *Repo) Close() error { return r.store.Close() }

// Workload is the workload the repository holds.
func (r *Repo) Workload() string { return r.workload }

// String is the repository URL (password redacted) and workload.
func (r *Repo) String() string { return r.url + " (" + r.workload + ")" }

// Object keys. Everything of a workload lives under "<workload>/".
func (r *Repo) walPrefix() string              { return r.workload + "/wal/" }
func (r *Repo) walKey(name string) string      { return r.walPrefix() + name }
func (r *Repo) backupsPrefix() string          { return r.workload + "/backups/" }
func (r *Repo) backupPrefix(id string) string  { return r.backupsPrefix() + id + "/" }
func (r *Repo) manifestKey(id string) string   { return r.backupPrefix(id) + manifestName }
func (r *Repo) partKey(id, part string) string { return r.backupPrefix(id) + part }

const (
	manifestName   = "manifest.json"
	manifestFormat = 1
	idLayout       = "20060102T150405Z"
)

// Info describes a base backup: the content of its manifest.json, which is
// written last (a backup exists exactly when its manifest does).
type Info struct {
	ID       string
	Workload string
	// Node is the node the backup was taken from (Source.Node).
	Node string
	// SystemID is the database system identifier; every backup and WAL
	// segment of one cluster shares it.
	SystemID uint64
	// PGVersion is the server's version (server_version, e.g. "15.14").
	PGVersion      string
	WALSegmentSize int64
	// Timeline is the backup's start timeline; StopTimeline differs when a
	// standby changed timeline during the backup.
	Timeline     uint32
	StopTimeline uint32
	// StartLSN is backup_label's START WAL LOCATION; StopLSN is
	// backup_manifest's last End-LSN: recovery is consistent from there.
	StartLSN lifeline.LSN
	StopLSN  lifeline.LSN
	// StartWAL and StopWAL are the first and last WAL segments the backup
	// needs; Backup waited until both (and all between) were archived.
	StartWAL string
	StopWAL  string
	// StartTime is when the backup started (backup_label's START TIME when
	// its zone is understood, else this machine's clock at launch). StopTime
	// is this machine's clock after the server ended the backup, so it is
	// after the stop LSN was written: a restore to any time after StopTime
	// can use the backup (up to clock skew with the database server).
	StartTime time.Time
	StopTime  time.Time
	// From is backup_label's BACKUP FROM: "primary" or "standby".
	From string
	// Bytes is the size of the tar stream; StoredBytes what the parts take
	// in the bucket (compressed, encrypted).
	Bytes       int64
	StoredBytes int64
	Files       int
	Parts       []Part
	Duration    time.Duration
	Encrypted   bool
}

// Part is one piece of a backup's tar stream, stored as
// "<workload>/backups/<id>/<name>".
type Part struct {
	Name       string
	Size       int64
	StoredSize int64
	SHA256     string
}

// infoJSON is manifest.json: LSNs in PostgreSQL's notation, the system
// identifier as a decimal string (it does not fit a JSON number safely).
type infoJSON struct {
	Format         int        `json:"format"`
	ID             string     `json:"id"`
	Workload       string     `json:"workload"`
	Node           string     `json:"node,omitempty"`
	SystemID       string     `json:"system_identifier"`
	PGVersion      string     `json:"pg_version"`
	WALSegmentSize int64      `json:"wal_segment_size"`
	Timeline       uint32     `json:"timeline"`
	StopTimeline   uint32     `json:"stop_timeline"`
	StartLSN       string     `json:"start_lsn"`
	StopLSN        string     `json:"stop_lsn"`
	StartWAL       string     `json:"start_wal"`
	StopWAL        string     `json:"stop_wal"`
	StartTime      time.Time  `json:"start_time"`
	StopTime       time.Time  `json:"stop_time"`
	From           string     `json:"from,omitempty"`
	Bytes          int64      `json:"bytes"`
	StoredBytes    int64      `json:"stored_bytes"`
	Files          int        `json:"files"`
	Parts          []partJSON `json:"parts"`
	Duration       float64    `json:"duration_seconds"`
	Encrypted      bool       `json:"encrypted"`
}

type partJSON struct {
	Key        string `json:"key"`
	Size       int64  `json:"size"`
	StoredSize int64  `json:"stored_size"`
	SHA256     string `json:"sha256"`
}

// MarshalJSON writes the manifest.json form.
func (i Info) MarshalJSON() ([]byte, error) {
	j := infoJSON{
		Format: manifestFormat, ID: i.ID, Workload: i.Workload, Node: i.Node,
		SystemID: strconv.FormatUint(i.SystemID, 10), PGVersion: i.PGVersion, WALSegmentSize: i.WALSegmentSize,
		Timeline: i.Timeline, StopTimeline: i.StopTimeline,
		StartLSN: i.StartLSN.String(), StopLSN: i.StopLSN.String(), StartWAL: i.StartWAL, StopWAL: i.StopWAL,
		StartTime: i.StartTime.UTC(), StopTime: i.StopTime.UTC(), From: i.From,
		Bytes: i.Bytes, StoredBytes: i.StoredBytes, Files: i.Files,
		Duration: i.Duration.Seconds(), Encrypted: i.Encrypted,
	}
	for _, p := range i.Parts {
		j.Parts = append(j.Parts, partJSON{Key: p.Name, Size: p.Size, StoredSize: p.StoredSize, SHA256: p.SHA256})
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads and validates the manifest.json form.
func (i *Info) UnmarshalJSON(b []byte) error {
	info, err := parseInfo(b)
	if err != nil {
		return err
	}
	*i = *info
	return nil
}

// parseInfo parses manifest.json and checks that it describes a usable
// backup: known format, parseable positions, parts that add up.
func parseInfo(b []byte) (*Info, error) {
	var j infoJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if dec.More() {
		return nil, errors.New("manifest: data after the JSON object")
	}
	if j.Format != manifestFormat {
		return nil, fmt.Errorf("manifest: format %d, this version reads %d", j.Format, manifestFormat)
	}
	if _, err := time.Parse(idLayout, j.ID); err != nil {
		return nil, fmt.Errorf("manifest: id %q is not a backup id", j.ID)
	}
	i := &Info{
		ID: j.ID, Workload: j.Workload, Node: j.Node, PGVersion: j.PGVersion, WALSegmentSize: j.WALSegmentSize,
		Timeline: j.Timeline, StopTimeline: j.StopTimeline, StartWAL: j.StartWAL, StopWAL: j.StopWAL,
		StartTime: j.StartTime, StopTime: j.StopTime, From: j.From,
		Bytes: j.Bytes, StoredBytes: j.StoredBytes, Files: j.Files, Encrypted: j.Encrypted,
	}
	if !(j.Duration >= 0 && j.Duration < 1e9) { // also rejects NaN
		return nil, fmt.Errorf("manifest %s: duration_seconds %v", j.ID, j.Duration)
	}
	i.Duration = time.Duration(math.Round(j.Duration * float64(time.Second)))
	var err error
	if i.SystemID, err = strconv.ParseUint(j.SystemID, 10, 64); err != nil {
		return nil, fmt.Errorf("manifest %s: system_identifier %q", j.ID, j.SystemID)
	}
	if i.StartLSN, err = lifeline.ParseLSN(j.StartLSN); err != nil {
		return nil, fmt.Errorf("manifest %s: start_lsn: %w", j.ID, err)
	}
	if i.StopLSN, err = lifeline.ParseLSN(j.StopLSN); err != nil {
		return nil, fmt.Errorf("manifest %s: stop_lsn: %w", j.ID, err)
	}
	if !validSegmentSize(i.WALSegmentSize) {
		return nil, fmt.Errorf("manifest %s: wal_segment_size %d", j.ID, i.WALSegmentSize)
	}
	if i.Timeline == 0 || i.StopTimeline < i.Timeline || i.StopLSN < i.StartLSN {
		return nil, fmt.Errorf("manifest %s: timelines %d..%d, LSNs %s..%s", j.ID, i.Timeline, i.StopTimeline, i.StartLSN, i.StopLSN)
	}
	for _, s := range []struct {
		name string
		tli  uint32
		lsn  lifeline.LSN
	}{{i.StartWAL, i.Timeline, i.StartLSN}, {i.StopWAL, i.StopTimeline, i.StopLSN}} {
		w, err := parseWALName(s.name)
		if err != nil || w.kind != walSegment || w.tli != s.tli {
			return nil, fmt.Errorf("manifest %s: WAL segment %q does not match timeline %d", j.ID, s.name, s.tli)
		}
	}
	if i.StopTime.Before(i.StartTime) {
		return nil, fmt.Errorf("manifest %s: stop_time %s before start_time %s", j.ID, i.StopTime, i.StartTime)
	}
	if len(j.Parts) == 0 {
		return nil, fmt.Errorf("manifest %s: no parts", j.ID)
	}
	var sum int64
	seen := map[string]bool{}
	for _, p := range j.Parts {
		if !validPartName(p.Key) || seen[p.Key] {
			return nil, fmt.Errorf("manifest %s: bad or repeated part %q", j.ID, p.Key)
		}
		seen[p.Key] = true
		if h, err := hex.DecodeString(p.SHA256); err != nil || len(h) != 32 || p.Size < 0 || p.StoredSize < 0 {
			return nil, fmt.Errorf("manifest %s: part %s: bad size or sha256", j.ID, p.Key)
		}
		sum += p.Size
		i.Parts = append(i.Parts, Part{Name: p.Key, Size: p.Size, StoredSize: p.StoredSize, SHA256: p.SHA256})
	}
	if sum != i.Bytes {
		return nil, fmt.Errorf("manifest %s: parts add up to %d bytes, bytes says %d", j.ID, sum, i.Bytes)
	}
	return i, nil
}

func partName(n int) string { return fmt.Sprintf("part-%05d", n) }

func validPartName(s string) bool {
	rest, ok := strings.CutPrefix(s, "part-")
	if !ok || len(rest) < 5 {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// readSmall reads a whole (small) object, verified.
func (r *Repo) readSmall(ctx context.Context, key string, limit int64) ([]byte, error) {
	rc, err := r.store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("read %s: larger than %d bytes", key, limit)
	}
	return b, nil
}

// Info returns the backup with the given id. A missing backup wraps
// ErrNotFound.
func (r *Repo) Info(ctx context.Context, id string) (*Info, error) {
	if _, err := time.Parse(idLayout, id); err != nil {
		return nil, fmt.Errorf("backup %q: not a backup id (want e.g. 20261125T101500Z)", id)
	}
	b, err := r.readSmall(ctx, r.manifestKey(id), 64<<20)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	info, err := parseInfo(b)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %s: %w: %v", id, r.manifestKey(id), ErrCorrupt, err)
	}
	if info.ID != id || info.Workload != r.workload {
		return nil, fmt.Errorf("backup %s: %s: %w: manifest describes backup %s of workload %s",
			id, r.manifestKey(id), ErrCorrupt, info.ID, info.Workload)
	}
	return info, nil
}

// List returns every backup of the workload, oldest first (by stop time).
// An unreadable manifest is an error: a repository whose backups cannot be
// read must not look empty.
func (r *Repo) List(ctx context.Context) ([]Info, error) {
	ids, _, err := r.backupIDs(ctx)
	if err != nil {
		return nil, err
	}
	var out []Info
	for _, id := range ids {
		info, err := r.Info(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("list backups: %w", err)
		}
		out = append(out, *info)
	}
	sortInfos(out)
	return out, nil
}

func sortInfos(b []Info) {
	slices.SortFunc(b, func(x, y Info) int {
		if c := x.StopTime.Compare(y.StopTime); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
}

// backupDir is what a listing shows of one backup directory.
type backupDir struct {
	keys     []objstore.Entry
	manifest bool
	newest   time.Time
}

// backupIDs lists the ids of complete backups (with a manifest) and every
// backup directory with its objects.
func (r *Repo) backupIDs(ctx context.Context) ([]string, map[string]*backupDir, error) {
	dirs := map[string]*backupDir{}
	for e, err := range r.store.List(ctx, r.backupsPrefix()) {
		if err != nil {
			return nil, nil, fmt.Errorf("list backups: %w", err)
		}
		rest := strings.TrimPrefix(e.Key, r.backupsPrefix())
		id, name, ok := strings.Cut(rest, "/")
		if !ok {
			continue
		}
		d := dirs[id]
		if d == nil {
			d = &backupDir{}
			dirs[id] = d
		}
		d.keys = append(d.keys, e)
		if e.ModTime.After(d.newest) {
			d.newest = e.ModTime
		}
		if name == manifestName {
			d.manifest = true
		}
	}
	var ids []string
	for id, d := range dirs {
		if d.manifest {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, dirs, nil
}

// walEntry is one object of the WAL archive.
type walEntry struct {
	walName
	modTime time.Time
	stored  int64
}

// listWAL lists the WAL archive. Objects whose names are not WAL names are
// skipped (and so never deleted by retention).
func (r *Repo) listWAL(ctx context.Context) ([]walEntry, error) {
	var out []walEntry
	for e, err := range r.store.List(ctx, r.walPrefix()) {
		if err != nil {
			return nil, fmt.Errorf("list WAL: %w", err)
		}
		w, perr := parseWALName(strings.TrimPrefix(e.Key, r.walPrefix()))
		if perr != nil {
			continue
		}
		out = append(out, walEntry{walName: w, modTime: e.ModTime, stored: e.StoredSize})
	}
	return out, nil
}

func discardLogger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
