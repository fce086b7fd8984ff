package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/postgres"
)

// Source is the server a base backup is taken from: a primary or a standby
// that archives (or whose primary archives) into the same repository.
type Source struct {
	// BinDir and Owner are not used by Backup, which speaks the
	// replication protocol itself; they are kept for callers that run
	// PostgreSQL tools for the same source.
	BinDir string
	Owner  *postgres.Owner
	Host   string
	Port   int
	// User is a role with the REPLICATION attribute; Password is sent over
	// the connection only, never on a command line.
	User     string
	Password string
	// TLS, when set, makes the connection TLS, the source's certificate
	// checked against TLS.CA for ServerName (Host when empty), and shows
	// TLS.Cert as the client's.
	TLS        *postgres.TLSFiles
	ServerName string
	// Node names the source in the backup's Info ("eu-west/a").
	Node string
}

// BackupOptions tune Backup. The zero value works.
type BackupOptions struct {
	// PartSize is the size of the pieces the tar stream is cut into
	// (DefaultPartSize when 0). Smaller parts restore with more parallelism
	// and retry cheaper; each part is one object.
	PartSize int64
	// Parallel is how many parts may be uploading at once (DefaultParallel
	// when 0). Memory stays bounded: a part is streamed through objstore's
	// spool (8 MiB in memory, the rest in a temporary file), never held whole.
	Parallel int
	// Progress, if set, is called from Backup's goroutine about every 250ms
	// with the bytes of the backup read so far, and once at the end.
	Progress func(Progress)
	// SwitchWAL forces the primary to finish its current WAL segment (e.g.
	// `SELECT pg_switch_wal()` on the primary). Backup calls it while it waits
	// for the segment holding the stop LSN to be archived; a backup taken
	// from a standby needs it unless archive_timeout is short. nil: only wait.
	SwitchWAL func(ctx context.Context) error
	// WALTimeout bounds that wait (DefaultWALTimeout when 0).
	WALTimeout time.Duration
	Logger     *slog.Logger
}

// Defaults for BackupOptions and RestoreOptions.
const (
	DefaultPartSize   = 64 << 20
	DefaultParallel   = 4
	DefaultWALTimeout = 5 * time.Minute
)

// Progress is a snapshot of a running backup.
type Progress struct {
	// Bytes of the tar stream read from the server.
	Bytes int64
	// Parts uploaded (complete objects).
	Parts   int
	Elapsed time.Duration
	// Phase is "copy" while the server sends the backup, "wal" while
	// waiting for the archive, "done" at the end.
	Phase string
}

// ident is what the source says about itself over the replication protocol.
type ident struct {
	systemID  uint64
	timeline  uint32
	segSize   int64
	version   string // "15.14"
	majorVers string // "15"
	archiving bool   // archive_mode is not off
}

// Backup takes a base backup of src into the repository and returns its Info.
//
// Backup runs BASE_BACKUP on a replication connection (fast checkpoint, no
// WAL, a manifest with CRC-32C file checksums, WAIT false) and reads the tar
// stream of the data directory, to which it appends backup_manifest as
// pg_basebackup -Ft does. The stream is cut into parts uploaded
// concurrently, while the same bytes are scanned as a tar to pick out
// backup_label, backup_manifest, global/pg_control and PG_VERSION. Backup
// then checks: backup_manifest's own checksum; that its WAL ranges start at
// backup_label's START WAL LOCATION on START TIMELINE; that every file it
// lists is in the tar with its size and nothing else is; that pg_control's
// system identifier and PG_VERSION are the server's. It waits until every WAL
// segment from the start to the stop LSN is archived (calling opt.SwitchWAL),
// and only then writes manifest.json, the object that makes the backup exist.
// On any error the uploaded parts are deleted (best effort; retention removes
// what is left) and no manifest is written.
//
// Tablespaces other than the default ones are not supported (the tar stream
// holds one tablespace).
func (r *Repo) Backup(ctx context.Context, src Source, opt BackupOptions) (_ *Info, err error) {
	if opt.PartSize <= 0 {
		opt.PartSize = DefaultPartSize
	}
	if opt.Parallel <= 0 {
		opt.Parallel = DefaultParallel
	}
	if opt.WALTimeout <= 0 {
		opt.WALTimeout = DefaultWALTimeout
	}
	log := discardLogger(opt.Logger).With("backup", r.workload)
	if src.Host == "" || src.Port == 0 || src.User == "" {
		return nil, errors.New("backup: source needs Host, Port and User")
	}
	launched := time.Now()
	id, err := r.newID(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	log = log.With("id", id)
	conn, idn, err := identify(ctx, src)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}

	bctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sp := &splitter{ctx: bctx, fail: cancel, r: r, id: id, partSize: opt.PartSize, sem: make(chan struct{}, opt.Parallel)}
	defer func() {
		if err != nil {
			r.cleanupParts(id, log)
		}
	}()

	log.Info("base backup", "host", src.Host, "port", src.Port, "system_id", idn.systemID)
	scan := &tarScan{files: map[string]int64{}}
	prog := &progressWriter{start: launched, fn: opt.Progress, parts: sp.uploaded}
	// Every byte goes to the scanner and to the current part.
	bb, copyErr := baseBackup(bctx, conn, "lifeline "+id, func(p []byte) error {
		scan.write(p)
		prog.write(p)
		return sp.write(p)
	})
	scan.finish()
	// After the stop point was written: a restore to any later time may use
	// this backup.
	stopped := time.Now()
	if copyErr != nil {
		cancel(copyErr)
	} else if cause := context.Cause(bctx); cause != nil {
		copyErr = cause
	}
	upErr := sp.close(copyErr)
	switch {
	case copyErr != nil:
		return nil, fmt.Errorf("backup %s: %w", id, copyErr)
	case upErr != nil:
		return nil, fmt.Errorf("backup %s: upload: %w", id, upErr)
	}
	for _, n := range bb.notices {
		log.Info("server notice", "message", n)
	}
	info, err := checkBackup(scan, idn)
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	// A standby's own archive_mode does not matter: its primary's archiving
	// is what Backup waits for below.
	if info.From == "primary" && !idn.archiving {
		return nil, fmt.Errorf("backup %s: the source does not archive WAL (archive_mode is off), so the backup could never be restored", id)
	}
	if bb.endLSN != info.StopLSN || bb.startLSN != info.StartLSN || bb.endTimeline != info.StopTimeline {
		return nil, fmt.Errorf("backup %s: the server reported WAL from %s to %s on timeline %d, backup_label and backup_manifest say %s to %s on timeline %d",
			id, bb.startLSN, bb.endLSN, bb.endTimeline, info.StartLSN, info.StopLSN, info.StopTimeline)
	}
	info.ID, info.Workload, info.Node = id, r.workload, src.Node
	info.Parts, info.Bytes, info.StoredBytes = sp.result()
	if info.Bytes != prog.n {
		return nil, fmt.Errorf("backup %s: internal error: read %d bytes from the server, the parts hold %d", id, prog.n, info.Bytes)
	}
	info.StopTime = stopped.UTC()
	if !info.StartTime.IsZero() && (info.StartTime.After(info.StopTime) || info.StartTime.Before(launched.Add(-time.Hour))) {
		info.StartTime = time.Time{} // server clock far from ours: use ours
	}
	if info.StartTime.IsZero() {
		info.StartTime = launched.UTC().Truncate(time.Second)
	}
	info.Encrypted = r.encrypted

	emit := func(phase string) {
		if opt.Progress != nil {
			opt.Progress(Progress{Bytes: info.Bytes, Parts: len(info.Parts), Elapsed: time.Since(launched), Phase: phase})
		}
	}
	emit("wal")
	log.Info("waiting for WAL", "start", info.StartWAL, "stop", info.StopWAL)
	// A primary switched to a new segment as the backup ended; the archiver
	// is on its way. A standby's primary may need a nudge.
	if err := r.waitArchived(ctx, scan.span, info.WALSegmentSize, opt.SwitchWAL, info.From == "primary", opt.WALTimeout); err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	info.Duration = time.Since(launched)
	b, err := info.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("backup %s: %w", id, err)
	}
	if _, err := r.store.PutIfAbsent(ctx, r.manifestKey(id), bytes.NewReader(b)); err != nil {
		return nil, fmt.Errorf("backup %s: write manifest: %w", id, err)
	}
	emit("done")
	log.Info("backup done", "bytes", info.Bytes, "parts", len(info.Parts), "seconds", info.Duration.Seconds())
	return info, nil
}

// newID returns a fresh backup id: the current UTC second, unused in the
// repository (waiting for the next second if it is taken).
func (r *Repo) newID(ctx context.Context) (string, error) {
	for range 5 {
		id := time.Now().UTC().Format(idLayout)
		taken := false
		for _, err := range r.store.List(ctx, r.backupPrefix(id)) {
			if err != nil {
				return "", err
			}
			taken = true
			break
		}
		if !taken {
			return id, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(time.Until(time.Now().Truncate(time.Second).Add(time.Second))):
		}
	}
	return "", errors.New("no free backup id: another backup of this workload starts every second")
}

// cleanupParts deletes what a failed backup uploaded.
func (r *Repo) cleanupParts(id string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for e, err := range r.store.List(ctx, r.backupPrefix(id)) {
		if err != nil {
			log.Warn("cleanup of a failed backup", "err", err)
			return
		}
		if err := r.store.Delete(ctx, e.Key); err != nil && !errors.Is(err, ErrNotFound) {
			log.Warn("cleanup of a failed backup", "err", err)
		}
	}
}

// identify opens a physical replication connection to the source (the
// access BASE_BACKUP needs) and asks it for its system identifier, timeline,
// WAL segment size, version and archive_mode. The caller owns the connection.
func identify(ctx context.Context, src Source) (_ *pgconn.PgConn, _ ident, err error) {
	client := postgres.Client{User: src.User, Password: src.Password, TLS: src.TLS}
	pcfg, err := client.ConnConfig(src.Host, src.Port, src.ServerName, "replication")
	if err != nil {
		return nil, ident{}, fmt.Errorf("identify %s:%d: %w", src.Host, src.Port, err)
	}
	cfg := &pcfg.Config
	cfg.RuntimeParams["replication"] = "true"
	cfg.RuntimeParams["application_name"] = "lifeline-backup"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, ident{}, fmt.Errorf("identify %s:%d: %w", src.Host, src.Port, err)
	}
	defer func() {
		if err != nil {
			conn.Close(context.Background())
		}
	}()
	row := func(q string, cols int) ([][]byte, error) {
		res, err := conn.Exec(ctx, q).ReadAll()
		if err != nil {
			return nil, fmt.Errorf("identify %s:%d: %s: %w", src.Host, src.Port, q, err)
		}
		if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < cols {
			return nil, fmt.Errorf("identify %s:%d: %s: unexpected answer", src.Host, src.Port, q)
		}
		return res[0].Rows[0], nil
	}
	var id ident
	r, err := row("IDENTIFY_SYSTEM", 2)
	if err != nil {
		return nil, ident{}, err
	}
	if id.systemID, err = strconv.ParseUint(string(r[0]), 10, 64); err != nil {
		return nil, ident{}, fmt.Errorf("identify %s:%d: system identifier %q", src.Host, src.Port, r[0])
	}
	tli, err := strconv.ParseUint(string(r[1]), 10, 32)
	if err != nil {
		return nil, ident{}, fmt.Errorf("identify %s:%d: timeline %q", src.Host, src.Port, r[1])
	}
	id.timeline = uint32(tli)
	if r, err = row("SHOW wal_segment_size", 1); err != nil {
		return nil, ident{}, err
	}
	if id.segSize, err = parseMemory(string(r[0])); err != nil || !validSegmentSize(id.segSize) {
		return nil, ident{}, fmt.Errorf("identify %s:%d: wal_segment_size %q", src.Host, src.Port, r[0])
	}
	if r, err = row("SHOW server_version", 1); err != nil {
		return nil, ident{}, err
	}
	id.version, _, _ = strings.Cut(string(r[0]), " ")
	id.majorVers, _, _ = strings.Cut(id.version, ".")
	if major, err := strconv.Atoi(id.majorVers); err != nil || major < 15 {
		return nil, ident{}, fmt.Errorf("identify %s:%d: server version %s: Backup needs PostgreSQL 15 or later", src.Host, src.Port, id.version)
	}
	if r, err = row("SHOW archive_mode", 1); err != nil {
		return nil, ident{}, err
	}
	id.archiving = string(r[0]) != "off"
	return conn, id, nil
}

// parseMemory parses a memory setting as SHOW prints it: "16MB", "1GB", "512kB".
func parseMemory(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"kB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				return 0, err
			}
			return v * u.mult, nil
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func connQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// progressWriter counts the stream and reports progress.
type progressWriter struct {
	start time.Time
	fn    func(Progress)
	parts func() int
	n     int64
	last  time.Time
}

func (p *progressWriter) write(b []byte) {
	p.n += int64(len(b))
	if p.fn != nil && time.Since(p.last) >= 250*time.Millisecond {
		p.last = time.Now()
		p.fn(Progress{Bytes: p.n, Parts: p.parts(), Elapsed: time.Since(p.start), Phase: "copy"})
	}
}

// splitter cuts the stream into parts and uploads each one from its own
// goroutine, which compresses and spools the part as it arrives and uploads
// it while the next parts are written. The stream reaches a part through a
// queue of chunks (chunkPipe), so that reading from the server never waits
// for the compression of what it just read. At most cap(sem) parts are in
// flight.
type splitter struct {
	ctx      context.Context
	fail     context.CancelCauseFunc
	r        *Repo
	id       string
	partSize int64
	sem      chan struct{}
	wg       sync.WaitGroup

	cur  *chunkPipe
	left int64

	mu    sync.Mutex
	parts []Part
	done  int
	err   error
}

func (s *splitter) write(p []byte) error {
	for len(p) > 0 {
		if s.cur == nil {
			if err := s.startPart(); err != nil {
				return err
			}
		}
		k := min(int64(len(p)), s.left)
		if err := s.cur.write(s.ctx, p[:k]); err != nil {
			return err
		}
		s.left -= k
		p = p[k:]
		if s.left == 0 {
			if err := s.cur.close(s.ctx, nil); err != nil {
				return err
			}
			s.cur = nil
		}
	}
	return nil
}

func (s *splitter) startPart() error {
	select {
	case s.sem <- struct{}{}:
	case <-s.ctx.Done():
		return context.Cause(s.ctx)
	}
	pipe := newChunkPipe()
	s.mu.Lock()
	n := len(s.parts)
	s.parts = append(s.parts, Part{Name: partName(n)})
	s.mu.Unlock()
	s.cur, s.left = pipe, s.partSize
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.sem }()
		info, err := s.r.store.Put(s.ctx, s.r.partKey(s.id, partName(n)), pipe)
		pipe.drain()
		if err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
			s.fail(err)
			return
		}
		s.mu.Lock()
		s.parts[n] = Part{Name: partName(n), Size: info.Size, StoredSize: info.StoredSize, SHA256: info.SHA256}
		s.done++
		s.mu.Unlock()
	}()
	return nil
}

// close ends the last part (with cause when the stream failed) and waits for
// every upload.
func (s *splitter) close(cause error) error {
	if s.cur != nil {
		if err := s.cur.close(s.ctx, cause); err != nil && cause == nil {
			s.fail(err)
		}
		s.cur = nil
	}
	s.wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *splitter) uploaded() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.done
}

func (s *splitter) result() ([]Part, int64, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n, stored int64
	for _, p := range s.parts {
		n += p.Size
		stored += p.StoredSize
	}
	return append([]Part(nil), s.parts...), n, stored
}

// tarScan follows the tar stream as it passes and keeps what the checks
// need. It parses PostgreSQL's tar (ustar headers, regular files and
// directories) in place, with no copy of the stream but the few members it
// keeps.
type tarScan struct {
	label, manifest, control, version []byte
	files                             map[string]int64
	err                               error
	span                              []walRange

	hdr   [blockSize]byte
	hn    int     // bytes of hdr filled
	left  int64   // data bytes of the current member still to come
	pad   int64   // padding bytes after them
	dst   *[]byte // where the current member's data goes, if kept
	ended bool    // the end-of-archive marker was seen
}

const blockSize = 512

// Limits on the members tarScan reads into memory.
const (
	maxLabel    = 1 << 20
	maxManifest = 1 << 30
)

// write takes the next bytes of the stream. It never fails: the first
// problem is kept in s.err for checkBackup.
func (s *tarScan) write(p []byte) {
	for len(p) > 0 && s.err == nil {
		switch {
		case s.left > 0:
			k := min(int64(len(p)), s.left)
			if s.dst != nil {
				*s.dst = append(*s.dst, p[:k]...)
			}
			s.left -= k
			p = p[k:]
		case s.pad > 0:
			k := min(int64(len(p)), s.pad)
			s.pad -= k
			p = p[k:]
		default:
			k := copy(s.hdr[s.hn:], p)
			s.hn += k
			p = p[k:]
			if s.hn == blockSize {
				s.hn = 0
				s.header()
			}
		}
	}
}

// header handles a complete header block.
func (s *tarScan) header() {
	if s.hdr == [blockSize]byte{} {
		s.ended = true
		return
	}
	if s.ended {
		s.err = errors.New("read tar stream: data after the end-of-archive marker")
		return
	}
	h, err := tar.NewReader(bytes.NewReader(s.hdr[:])).Next()
	if err != nil {
		s.err = fmt.Errorf("read tar stream: header after %d files: %w (only ustar headers are supported)", len(s.files), err)
		return
	}
	name := path.Clean(h.Name)
	s.dst = nil
	switch h.Typeflag {
	case tar.TypeReg:
		s.files[name] = h.Size
		s.left, s.pad = h.Size, (blockSize-h.Size%blockSize)%blockSize
		limit := int64(maxLabel)
		switch name {
		case "backup_label":
			s.dst = &s.label
		case "backup_manifest":
			s.dst, limit = &s.manifest, maxManifest
		case "global/pg_control":
			s.dst = &s.control
		case "PG_VERSION":
			s.dst = &s.version
		}
		if s.dst != nil {
			if h.Size > limit {
				s.err = fmt.Errorf("%s is %d bytes, larger than %d", name, h.Size, limit)
				return
			}
			// Grown as the data arrives: a header alone must not make
			// us allocate.
			*s.dst = make([]byte, 0, min(h.Size, 64<<10))
		}
	case tar.TypeDir:
	default:
		s.err = fmt.Errorf("tar member %s has type %q: only files and directories are supported (no tablespaces)", name, h.Typeflag)
	}
}

// finish checks that the stream ended where a tar archive can end.
func (s *tarScan) finish() {
	if s.err == nil && (s.hn != 0 || s.left != 0 || s.pad != 0 || !s.ended) {
		s.err = errors.New("read tar stream: truncated")
	}
}

// checkBackup checks what the scan found and fills in an Info from it.
func checkBackup(s *tarScan, idn ident) (*Info, error) {
	if s.err != nil {
		return nil, s.err
	}
	for name, b := range map[string][]byte{"backup_label": s.label, "backup_manifest": s.manifest, "global/pg_control": s.control, "PG_VERSION": s.version} {
		if b == nil {
			return nil, fmt.Errorf("the tar stream has no %s", name)
		}
	}
	l, err := parseLabel(s.label)
	if err != nil {
		return nil, err
	}
	m, err := parsePGManifest(s.manifest)
	if err != nil {
		return nil, err
	}
	span := m.walSpan()
	if err := checkSpan(span, l); err != nil {
		return nil, err
	}
	s.span = span
	if err := checkFiles(m, s.files); err != nil {
		return nil, err
	}
	sysid, err := controlSystemID(s.control)
	if err != nil {
		return nil, err
	}
	if sysid != idn.systemID {
		return nil, fmt.Errorf("pg_control has system identifier %d, the server says %d", sysid, idn.systemID)
	}
	if v := strings.TrimSpace(string(s.version)); v != idn.majorVers {
		return nil, fmt.Errorf("PG_VERSION says %q, the server is version %s", v, idn.version)
	}
	if want := segFileName(l.Timeline, segNo(l.StartLSN, idn.segSize), idn.segSize); want != l.StartWAL {
		return nil, fmt.Errorf("backup_label names segment %s for %s, with %d-byte segments it is %s", l.StartWAL, l.StartLSN, idn.segSize, want)
	}
	last := span[len(span)-1]
	info := &Info{
		SystemID: sysid, PGVersion: idn.version, WALSegmentSize: idn.segSize,
		Timeline: l.Timeline, StopTimeline: last.Timeline,
		StartLSN: l.StartLSN, StopLSN: last.end, StartWAL: l.StartWAL,
		StopWAL: segFileName(last.Timeline, lastSegment(last.start, last.end, idn.segSize), idn.segSize),
		From:    l.From, Files: len(m.Files),
	}
	if l.StartTimeOK {
		info.StartTime = l.StartTime
	}
	return info, nil
}

// lastSegment is the segment holding the last byte of WAL in [start, end).
func lastSegment(start, end lifeline.LSN, segSize int64) uint64 {
	if end > start {
		return segNo(end-1, segSize)
	}
	return segNo(start, segSize)
}

// checkFiles checks the tar's files against backup_manifest: same set, same sizes.
func checkFiles(m *pgManifest, files map[string]int64) error {
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		listed[f.Path] = true
		size, ok := files[f.Path]
		if !ok {
			return fmt.Errorf("backup_manifest lists %s, the tar stream does not hold it", f.Path)
		}
		if size != f.Size {
			return fmt.Errorf("%s is %d bytes in the tar stream, backup_manifest says %d", f.Path, size, f.Size)
		}
	}
	for name := range files {
		if name != "backup_manifest" && !listed[name] {
			return fmt.Errorf("the tar stream holds %s, which backup_manifest does not list", name)
		}
	}
	return nil
}

// neededSegments lists the WAL segments recovery must read to make a backup
// with these WAL ranges consistent. A range that ends at a timeline switch
// needs its timeline's segments before the one holding the switch point;
// that one is read from the next timeline.
func neededSegments(span []walRange, segSize int64) []string {
	var out []string
	for i, r := range span {
		first := segNo(r.start, segSize)
		var last uint64
		if i == len(span)-1 {
			last = lastSegment(r.start, r.end, segSize)
		} else {
			if segNo(r.end, segSize) == 0 {
				continue
			}
			last = segNo(r.end, segSize) - 1
		}
		for seg := first; seg <= last; seg++ {
			out = append(out, segFileName(r.Timeline, seg, segSize))
		}
	}
	return out
}

// waitArchived waits until every segment the backup needs is in the archive.
// It polls often at first (the last segment is usually archived within a
// fraction of a second) and every 250ms after. It calls switchWAL at once
// unless the source switched segments itself (switched), then every 10s.
func (r *Repo) waitArchived(ctx context.Context, span []walRange, segSize int64, switchWAL func(context.Context) error, switched bool, timeout time.Duration) error {
	missing := neededSegments(span, segSize)
	deadline := time.Now().Add(timeout)
	var lastSwitch time.Time
	if switched {
		lastSwitch = time.Now()
	}
	poll := 20 * time.Millisecond
	for {
		var still []string
		for _, name := range missing {
			if _, err := r.store.Stat(ctx, r.walKey(name)); err != nil {
				if !errors.Is(err, ErrNotFound) {
					return fmt.Errorf("check archived WAL: %w", err)
				}
				still = append(still, name)
			}
		}
		if missing = still; len(missing) == 0 {
			return nil
		}
		if switchWAL != nil && time.Since(lastSwitch) >= 10*time.Second {
			lastSwitch = time.Now()
			if err := switchWAL(ctx); err != nil {
				return fmt.Errorf("switch WAL while waiting for %s to be archived: %w", missing[0], err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("WAL segment %s, needed by the backup, was not archived within %s: is archive_command working?", missing[0], timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for WAL segment %s to be archived: %w", missing[0], ctx.Err())
		case <-time.After(poll):
		}
		poll = min(2*poll, 250*time.Millisecond)
	}
}
