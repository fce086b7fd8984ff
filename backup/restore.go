package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/postgres"
)

// Target is where a restore stops: exactly one of Time, LSN or Latest.
type Target struct {
	// Time restores every transaction committed at or before it
	// (recovery_target_time, inclusive).
	Time time.Time
	// LSN restores up to and including the record at it (recovery_target_lsn).
	LSN lifeline.LSN
	// Latest restores everything in the archive.
	Latest bool
}

func (t Target) check() error {
	n := 0
	if !t.Time.IsZero() {
		n++
	}
	if t.LSN != 0 {
		n++
	}
	if t.Latest {
		n++
	}
	if n != 1 {
		return errors.New("restore target: give exactly one of a time, an LSN or latest")
	}
	return nil
}

func (t Target) String() string {
	switch {
	case t.Latest:
		return "latest"
	case t.LSN != 0:
		return "lsn " + t.LSN.String()
	case !t.Time.IsZero():
		return "time " + t.Time.Format(time.RFC3339Nano)
	}
	return "none"
}

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// RestoreCommand is PostgreSQL's restore_command, with %f and %p, e.g.
	// `lifeline wal-fetch --repo URL --workload orders %f %p`. Required. It
	// must exit with FetchExitCode(err) of FetchWAL.
	RestoreCommand string
	// Owner owns the restored files (nil: this process's user).
	Owner *postgres.Owner
	// Parallel is how many parts are downloaded and decompressed at once
	// (DefaultParallel when 0); each takes up to 9 MiB of memory.
	Parallel int
	// TempDir is not used any more: parts are decompressed straight into
	// the data directory. Kept so that callers compile.
	TempDir string
	// ArchiveCommand, when set, is the restored server's archive_command
	// (archive_mode=on): for a restore that becomes the workload's primary.
	// Empty turns archiving off (archive_mode=off), so that a side copy
	// never writes into a repository.
	ArchiveCommand string
	// Settings are extra postgresql.auto.conf settings (port, ...).
	Settings map[string]string
	Logger   *slog.Logger
	// Now is the current time (time.Now when nil), used to tell a target
	// in the future.
	Now func() time.Time
}

// RestoreResult says what a restore did.
type RestoreResult struct {
	// Backup is the backup the data directory was built from.
	Backup Info
	// Requested is the target asked for; Target is the one configured
	// (latest when the requested one is past the end of the archive; Notes
	// say so).
	Requested Target
	Target    Target
	Notes     []string
	// Timeline is the timeline recovery follows (the newest in the archive
	// that descends from the backup); LastWAL is the last segment recovery
	// needs (for latest: the newest archived), and LastWALStart its first LSN:
	// a server that ends recovery before it did not restore everything.
	Timeline     uint32
	LastWAL      string
	LastWALStart lifeline.LSN
	// Bytes of tar restored, StoredBytes downloaded, Files written.
	Bytes       int64
	StoredBytes int64
	Files       int
	// Seconds is the time Restore took (download, extraction and checks).
	Seconds float64
	// RecoveryConf is what was appended to postgresql.auto.conf.
	RecoveryConf string
}

// Restore builds a data directory in dir from which PostgreSQL recovers to
// target t, and returns what it used. The server is not started.
//
// The backup is the newest one that ended before the target (the newest one
// for latest); a target before the end of the oldest backup is an error
// wrapping ErrNoBackup. The WAL archive is checked first: a segment missing
// between the backup and the target is an error wrapping ErrWALGap. The
// parts are downloaded and decompressed in parallel and extracted as they
// arrive, each verified (its declared size and SHA-256 against
// manifest.json first, then objstore's checks as it is read, to its end);
// every file extracted is then checked against backup_manifest (size and
// checksum: CRC-32C, computed while extracting, or for older backups the
// SHA-256 of the file on disk), backup_label against the manifest's start
// LSN, and pg_control against its system identifier. Any failure clears the
// directory. Only then are recovery.signal and the recovery settings
// written (restore_command; recovery_target_time / _lsn; inclusive;
// recovery_target_timeline 'latest'; recovery_target_action 'promote').
//
// dir must be empty or absent; it is created with mode 0700 and, with its
// contents, owned by opt.Owner. On error it is left empty (or removed, if
// Restore created it). Files are not fsynced one by one: PostgreSQL fsyncs
// the whole data directory when it starts from a backup (its pg_control does
// not say "shut down"); Restore only starts the write-back of large files
// early, so that the disk works while the rest is extracted.
//
// Other settings of the backed-up server come along (postgresql.conf and its
// includes); the caller sets the restored server's own address, port and
// access (postgres.Instance.WriteConfig, or opt.Settings).
func (r *Repo) Restore(ctx context.Context, dir string, t Target, opt RestoreOptions) (_ *RestoreResult, err error) {
	started := time.Now()
	if err := t.check(); err != nil {
		return nil, err
	}
	if opt.RestoreCommand == "" {
		return nil, errors.New("restore: RestoreOptions.RestoreCommand is required (PostgreSQL fetches WAL with it)")
	}
	if opt.Parallel <= 0 {
		opt.Parallel = DefaultParallel
	}
	now := time.Now
	if opt.Now != nil {
		now = opt.Now
	}
	log := discardLogger(opt.Logger).With("restore", r.workload)

	created, err := prepareDir(dir, opt.Owner)
	if err != nil {
		return nil, fmt.Errorf("restore into %s: %w", dir, err)
	}
	defer func() {
		if err != nil {
			clearDir(dir, created)
		}
	}()

	backups, err := r.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	res := &RestoreResult{Requested: t, Target: t}
	b, err := chooseBackup(backups, t)
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", t, err)
	}
	entries, chain, err := r.walChain(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	plan, err := planWAL(entries, chain, b, t, now())
	if err != nil {
		return nil, fmt.Errorf("restore to %s: %w", t, err)
	}
	if plan.target.Latest && !t.Latest {
		if b, err = chooseBackup(backups, plan.target); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		if entries, chain, err = r.walChain(ctx, b); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		notes := plan.notes
		if plan, err = planWAL(entries, chain, b, plan.target, now()); err != nil {
			return nil, fmt.Errorf("restore to %s: %w", t, err)
		}
		plan.notes = append(notes, plan.notes...)
	}
	res.Backup, res.Target, res.Notes = *b, plan.target, plan.notes
	res.Timeline, res.LastWAL, res.LastWALStart = plan.timeline, plan.last, plan.lastStart
	log.Info("restoring", "backup", b.ID, "target", res.Target.String(), "dir", dir)

	st, err := r.extract(ctx, b, dir, opt)
	if err != nil {
		return nil, fmt.Errorf("restore backup %s: %w", b.ID, err)
	}
	res.Bytes, res.StoredBytes, res.Files = st.bytes, st.stored, st.files
	if res.RecoveryConf, err = writeRecoveryConf(dir, b, res.Target, opt); err != nil {
		return nil, fmt.Errorf("restore backup %s: %w", b.ID, err)
	}
	res.Seconds = time.Since(started).Seconds()
	log.Info("restored", "backup", b.ID, "bytes", res.Bytes, "seconds", res.Seconds)
	return res, nil
}

// chooseBackup picks the newest backup that ended at or before the target.
func chooseBackup(backups []Info, t Target) (*Info, error) {
	if len(backups) == 0 {
		return nil, fmt.Errorf("%w: the repository holds no backup", ErrNoBackup)
	}
	sorted := slices.Clone(backups)
	sortInfos(sorted)
	for i := len(sorted) - 1; i >= 0; i-- {
		b := &sorted[i]
		switch {
		case t.Latest:
			return b, nil
		case t.LSN != 0 && b.StopLSN <= t.LSN:
			return b, nil
		case !t.Time.IsZero() && !b.StopTime.After(t.Time):
			return b, nil
		}
	}
	oldest := sorted[0]
	if t.LSN != 0 {
		for _, b := range sorted {
			if b.StopLSN < oldest.StopLSN {
				oldest = b
			}
		}
		return nil, fmt.Errorf("%w: target LSN %s is before the end of the oldest backup, %s (ends at %s)", ErrNoBackup, t.LSN, oldest.ID, oldest.StopLSN)
	}
	return nil, fmt.Errorf("%w: target time %s is before the end of the oldest backup, %s (ended %s)",
		ErrNoBackup, t.Time.Format(time.RFC3339Nano), oldest.ID, oldest.StopTime.Format(time.RFC3339))
}

// prepareDir makes dir an empty 0700 directory owned by owner, reporting
// whether it created it.
func prepareDir(dir string, owner *postgres.Owner) (created bool, err error) {
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return false, err
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			return false, err
		}
		created = true
	case err != nil:
		return false, err
	case !st.IsDir():
		return false, errors.New("not a directory")
	default:
		names, err := readDirNames(dir)
		if err != nil {
			return false, err
		}
		if len(names) > 0 {
			return false, fmt.Errorf("%w (holds %s)", ErrNotEmpty, strings.Join(names[:min(3, len(names))], ", "))
		}
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return created, err
	}
	if owner != nil {
		if err := os.Chown(dir, int(owner.UID), int(owner.GID)); err != nil {
			return created, err
		}
	}
	return created, nil
}

func readDirNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	sort.Strings(names)
	return names, err
}

// clearDir undoes a failed restore.
func clearDir(dir string, created bool) {
	if created {
		os.RemoveAll(dir)
		return
	}
	names, _ := readDirNames(dir)
	for _, n := range names {
		os.RemoveAll(filepath.Join(dir, n))
	}
}

type extractStats struct {
	bytes, stored int64
	files         int
}

// fileSum is what extraction saw of one file.
type fileSum struct {
	size int64
	sum  string
}

// extract downloads b's parts (in parallel, in order of need) and unpacks the
// tar stream into dir, then checks the result against the backup's manifests.
func (r *Repo) extract(ctx context.Context, b *Info, dir string, opt RestoreOptions) (extractStats, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ps := r.streamParts(ctx, b, opt.Parallel)
	defer ps.wait()
	st := extractStats{stored: b.StoredBytes}
	sums, err := untar(ps, dir, opt.Owner, &st)
	if err == nil {
		err = checkTrailer(ps)
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			err = cause
		}
		cancel(err)
		return st, err
	}
	if err := checkRestored(dir, b, sums); err != nil {
		return st, err
	}
	return st, nil
}

// partStream serves the plaintext of a backup's parts, in order, as one
// stream. Each part is downloaded, decompressed and verified by its own
// goroutine into a chunkPipe, so that decompression runs beside the
// extraction; at most parallel parts are open at once, which bounds memory
// to parallel pipes. A part's bytes may reach the extractor before the end
// of the part is verified: a damaged part fails the stream before its end,
// and Restore then clears the data directory, so nothing of a damaged backup
// is left to start.
type partStream struct {
	ctx   context.Context
	pipes []*chunkPipe
	sem   chan struct{}
	wg    sync.WaitGroup
	i     int
}

func (r *Repo) streamParts(ctx context.Context, b *Info, parallel int) *partStream {
	p := &partStream{ctx: ctx, sem: make(chan struct{}, parallel)}
	for range b.Parts {
		p.pipes = append(p.pipes, newChunkPipe())
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for i, part := range b.Parts {
			select {
			case p.sem <- struct{}{}:
			case <-ctx.Done():
				for _, pipe := range p.pipes[i:] {
					_ = pipe.close(ctx, context.Cause(ctx))
				}
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				err := r.decodePart(ctx, b.ID, part, p.pipes[i])
				_ = p.pipes[i].close(ctx, err)
			}()
		}
	}()
	return p
}

// decodePart writes the plaintext of one part into pipe. The object must
// declare the size and SHA-256 that manifest.json records for the part (an
// object from elsewhere, intact but not this part, fails here), and
// objstore checks the plaintext against that declaration as it reads.
func (r *Repo) decodePart(ctx context.Context, id string, part Part, pipe *chunkPipe) error {
	key := r.partKey(id, part.Name)
	rc, info, err := r.store.GetInfo(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if info.Size != part.Size || !strings.EqualFold(info.SHA256, part.SHA256) {
		return fmt.Errorf("%s: %w: the object holds %d bytes with SHA-256 %s, manifest.json says %d bytes with SHA-256 %s",
			key, ErrCorrupt, info.Size, info.SHA256, part.Size, part.SHA256)
	}
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, err := rc.Read(buf)
		n += int64(k)
		if k > 0 {
			if werr := pipe.write(ctx, buf[:k]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if n != part.Size {
		return fmt.Errorf("%s: %w: read %d bytes, manifest.json says %d", key, ErrCorrupt, n, part.Size)
	}
	return nil
}

// Read serves the parts in order, releasing each one's slot when consumed.
func (p *partStream) Read(b []byte) (int, error) {
	for {
		if p.i == len(p.pipes) {
			return 0, io.EOF
		}
		n, err := p.pipes[p.i].Read(b)
		if err == io.EOF {
			p.pipes[p.i].drain()
			p.i++
			<-p.sem
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

// wait waits for the downloaders; call after the context is done or every
// part was read.
func (p *partStream) wait() {
	for _, pipe := range p.pipes[p.i:] {
		pipe.drain()
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	for {
		select {
		case <-done:
			for _, pipe := range p.pipes {
				pipe.drain()
			}
			return
		case <-p.sem:
		}
	}
}

// untar extracts a tar stream into dir (files and directories only, no path
// leaving dir), owned by owner, and returns each file's size and CRC-32C
// (as backup_manifest writes it).
func untar(r io.Reader, dir string, owner *postgres.Owner, st *extractStats) (map[string]fileSum, error) {
	sums := map[string]fileSum{}
	tr := tar.NewReader(r)
	buf := make([]byte, 1<<20)
	h := crc32.New(castagnoli)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read tar: %w", err)
		}
		name := path.Clean(hdr.Name)
		if name == "." {
			continue
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return nil, fmt.Errorf("tar member %q leaves the data directory", hdr.Name)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		perm := os.FileMode(hdr.Mode).Perm() & 0o750
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := mkdirOwned(target, perm|0o700, owner); err != nil {
				return nil, err
			}
		case tar.TypeReg:
			if err := mkdirOwned(filepath.Dir(target), 0o700, owner); err != nil {
				return nil, err
			}
			n, sum, err := writeFile(target, perm|0o600, owner, tr, buf, h)
			if err != nil {
				return nil, err
			}
			sums[name] = fileSum{size: n, sum: sum}
			st.bytes += n
			st.files++
		default:
			return nil, fmt.Errorf("tar member %s has type %q: only files and directories are restored", name, hdr.Typeflag)
		}
	}
	return sums, nil
}

func mkdirOwned(dir string, perm os.FileMode, owner *postgres.Owner) error {
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	if err := os.Mkdir(dir, perm); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if owner != nil {
		return os.Lchown(dir, int(owner.UID), int(owner.GID))
	}
	return nil
}

// writeFile writes r to a new file and returns its size and its checksum
// with h, as backup_manifest writes it (hex of the digest's bytes). Large
// files have their write-back started as they are written, so the disk works
// while the rest is decompressed, and PostgreSQL's fsync of the data directory
// at startup finds little left to do.
func writeFile(name string, perm os.FileMode, owner *postgres.Owner, r io.Reader, buf []byte, h hash.Hash32) (int64, string, error) {
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return 0, "", err
	}
	h.Reset()
	var n, flushed int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			h.Write(buf[:k])
			if _, err = f.Write(buf[:k]); err != nil {
				break
			}
			n += int64(k)
			if n-flushed >= writeBackChunk {
				startWriteBack(f, flushed, n-flushed)
				flushed = n
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return 0, "", rerr // the backup's error, not the file's
		}
	}
	if err == nil && n-flushed >= writeBackMin {
		startWriteBack(f, flushed, n-flushed)
	}
	if err == nil && owner != nil {
		err = f.Chown(int(owner.UID), int(owner.GID))
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", fmt.Errorf("write %s: %w", name, err)
	}
	return n, crc32cHex(h.Sum32()), nil
}

// checkTrailer reads what follows the tar's end-of-archive marker (so that
// every part is downloaded and verified): only zero padding may.
func checkTrailer(r io.Reader) error {
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		for _, c := range buf[:n] {
			if c != 0 {
				return fmt.Errorf("%w: data after the end of the tar archive", ErrCorrupt)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// checkRestored checks the extracted files against backup_manifest and the
// backup's manifest.json.
func checkRestored(dir string, b *Info, sums map[string]fileSum) error {
	raw, err := os.ReadFile(filepath.Join(dir, "backup_manifest"))
	if err != nil {
		return fmt.Errorf("%w: the backup holds no backup_manifest: %v", ErrCorrupt, err)
	}
	m, err := parsePGManifest(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	listed := make(map[string]bool, len(m.Files))
	for _, f := range m.Files {
		listed[f.Path] = true
		got, ok := sums[f.Path]
		switch {
		case !ok:
			return fmt.Errorf("%w: backup_manifest lists %s, the backup does not hold it", ErrCorrupt, f.Path)
		case got.size != f.Size:
			return fmt.Errorf("%w: %s is %d bytes, backup_manifest says %d", ErrCorrupt, f.Path, got.size, f.Size)
		}
		sum := got.sum
		if alg := strings.ToUpper(f.Algorithm); alg != "CRC32C" && alg != "" && alg != "NONE" {
			// Backups taken before Lifeline asked for CRC-32C have SHA-256
			// (or another algorithm PostgreSQL offers): hash the file on disk.
			if sum, err = fileChecksum(filepath.Join(dir, filepath.FromSlash(f.Path)), alg); err != nil {
				return fmt.Errorf("%s: %w", f.Path, err)
			}
		}
		if f.Algorithm != "" && !strings.EqualFold(f.Algorithm, "NONE") && !strings.EqualFold(sum, f.Checksum) {
			return fmt.Errorf("%w: %s has %s %s, backup_manifest says %s", ErrCorrupt, f.Path, f.Algorithm, sum, f.Checksum)
		}
	}
	for name := range sums {
		if name != "backup_manifest" && !listed[name] {
			return fmt.Errorf("%w: the backup holds %s, which backup_manifest does not list", ErrCorrupt, name)
		}
	}
	lb, err := os.ReadFile(filepath.Join(dir, "backup_label"))
	if err != nil {
		return fmt.Errorf("%w: the backup holds no backup_label: %v", ErrCorrupt, err)
	}
	l, err := parseLabel(lb)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if l.StartLSN != b.StartLSN || l.Timeline != b.Timeline {
		return fmt.Errorf("%w: backup_label starts at %s on timeline %d, manifest.json says %s on timeline %d",
			ErrCorrupt, l.StartLSN, l.Timeline, b.StartLSN, b.Timeline)
	}
	ctl, err := os.ReadFile(filepath.Join(dir, "global", "pg_control"))
	if err != nil {
		return fmt.Errorf("%w: the backup holds no pg_control: %v", ErrCorrupt, err)
	}
	if id, err := controlSystemID(ctl); err != nil || id != b.SystemID {
		return fmt.Errorf("%w: pg_control has system identifier %d, manifest.json says %d", ErrCorrupt, id, b.SystemID)
	}
	return nil
}

// confQuote quotes a postgresql.conf string value: GUC files process
// backslash escapes inside quotes, and a quote is doubled.
func confQuote(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(v) + "'"
}

// formatTargetTime renders a time for recovery_target_time, with its offset.
func formatTargetTime(t time.Time) string {
	return t.Format("2006-01-02 15:04:05.999999-07:00")
}

// writeRecoveryConf writes recovery.signal (and removes standby.signal) and
// appends the recovery settings to postgresql.auto.conf, which PostgreSQL
// reads after postgresql.conf and its includes, so they win.
func writeRecoveryConf(dir string, b *Info, t Target, opt RestoreOptions) (string, error) {
	// At most one recovery_target_* may be set, and PostgreSQL complains
	// when one is assigned (even '') while another holds a value: clear the
	// others first, the chosen one last (each setting's last occurrence
	// counts, in order).
	set := [][2]string{{"restore_command", opt.RestoreCommand}}
	kind, value := "recovery_target_time", ""
	switch {
	case !t.Time.IsZero():
		value = formatTargetTime(t.Time)
	case t.LSN != 0:
		kind, value = "recovery_target_lsn", t.LSN.String()
	}
	for _, k := range []string{"recovery_target", "recovery_target_name", "recovery_target_xid", "recovery_target_time", "recovery_target_lsn"} {
		if k != kind {
			set = append(set, [2]string{k, ""})
		}
	}
	set = append(set, [2]string{kind, value})
	set = append(set,
		[2]string{"recovery_target_inclusive", "on"},
		[2]string{"recovery_target_timeline", "latest"},
		[2]string{"recovery_target_action", "promote"},
		// Archive recovery only: never stream from the source's upstream.
		[2]string{"primary_conninfo", ""},
		[2]string{"primary_slot_name", ""},
	)
	if opt.ArchiveCommand != "" {
		set = append(set, [2]string{"archive_mode", "on"}, [2]string{"archive_command", opt.ArchiveCommand})
	} else {
		set = append(set, [2]string{"archive_mode", "off"})
	}
	keys := make([]string, 0, len(opt.Settings))
	for k := range opt.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		set = append(set, [2]string{k, opt.Settings[k]})
	}
	var conf bytes.Buffer
	fmt.Fprintf(&conf, "\n# Added by lifeline restore at %s: backup %s, target %s\n", time.Now().UTC().Format(time.RFC3339), b.ID, t)
	for _, kv := range set {
		fmt.Fprintf(&conf, "%s = %s\n", kv[0], confQuote(kv[1]))
	}

	auto := filepath.Join(dir, "postgresql.auto.conf")
	f, err := os.OpenFile(auto, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(conf.Bytes()); err != nil {
		f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Remove(filepath.Join(dir, "standby.signal")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	sig := filepath.Join(dir, "recovery.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return "", err
	}
	if o := opt.Owner; o != nil {
		for _, p := range []string{auto, sig} {
			if err := os.Chown(p, int(o.UID), int(o.GID)); err != nil {
				return "", err
			}
		}
	}
	return conf.String(), nil
}
