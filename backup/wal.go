package backup

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeline-dr/lifeline/objstore"
)

// PushWAL archives the WAL file at path (archive_command's %p; relative paths
// are relative to the working directory, which is PGDATA under PostgreSQL).
// The object is named after the file (%f). Pushing a file whose name is
// already archived with the same content succeeds without writing (a retry
// after a crash); other content fails with an error wrapping ErrConflict that
// names the object, and the archived object is left as it was.
//
// A segment is checked before it is sent: its size must be a valid WAL
// segment size and its first page header must carry its own address and
// size, so that a recycled or truncated file is never archived under a name.
func (r *Repo) PushWAL(ctx context.Context, path string) error {
	name := filepath.Base(path)
	w, err := parseWALName(name)
	if err != nil {
		return fmt.Errorf("push %s: %w", path, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	defer f.Close()
	if w.kind == walSegment || w.kind == walPartial {
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
		if err := checkSegmentHeader(f, w, st.Size()); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("push %s: %w", name, err)
		}
	}
	if _, err := r.store.PutIfAbsent(ctx, r.walKey(name), f); err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	return nil
}

// checkSegmentHeader checks the long page header at the start of a segment
// file: xlp_pageaddr (offset 8) must be the segment's first LSN and
// xlp_seg_size (offset 32) the file's size.
func checkSegmentHeader(f io.Reader, w walName, size int64) error {
	if !validSegmentSize(size) {
		return fmt.Errorf("%d bytes is not a WAL segment size (a power of two from 1 MiB to 1 GiB)", size)
	}
	var hdr [40]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		return fmt.Errorf("read page header: %w", err)
	}
	const xlpLongHeader = 0x0002
	info := binary.LittleEndian.Uint16(hdr[2:])
	addr := binary.LittleEndian.Uint64(hdr[8:])
	segSize := binary.LittleEndian.Uint32(hdr[32:])
	want := uint64(segStart(segNoOf(w, size), size))
	if info&xlpLongHeader == 0 || addr != want || int64(segSize) != size {
		return fmt.Errorf("first page header says address %X/%X and segment size %d, the name and size say %X/%X and %d: not this segment",
			addr>>32, uint32(addr), segSize, want>>32, uint32(want), size)
	}
	return nil
}

// FetchWAL writes the archived file name (restore_command's %f) to dest (%p)
// atomically: a temporary file beside dest, renamed over it once the object
// has been read and verified in full. dest never holds partial or
// unverified content.
//
// A missing file is an error wrapping ErrNotFound: PostgreSQL then ends
// archive recovery there. That is right only at the end of the archive, so
// when a segment is missing but a later segment of the same timeline is
// archived, FetchWAL returns ErrWALGap instead, and FetchExitCode makes
// restore_command fail in the way that stops PostgreSQL rather than letting
// it promote a database that lacks the WAL after the hole. A damaged object
// or a wrong key is reported with the object's name and the reason.
//
// A standby that also streams from a primary can get a missing segment that
// way: its wal-fetch may treat ErrWALGap as "not found" (exit 1) instead of
// stopping the standby.
func (r *Repo) FetchWAL(ctx context.Context, name, dest string) error {
	w, err := parseWALName(name)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	rc, err := r.store.Get(ctx, r.walKey(name))
	if err != nil {
		if errors.Is(err, ErrNotFound) && w.kind == walSegment {
			if later, lerr := r.laterSegment(ctx, w); lerr != nil {
				return fmt.Errorf("fetch %s: %w (and listing the archive for later segments failed: %v)", name, err, lerr)
			} else if later != "" {
				return fmt.Errorf("fetch %s: %w: %s is missing from %s but the later segment %s of the same timeline is there; "+
					"recovery must not end at this hole", name, ErrWALGap, r.walKey(name), r.url, later)
			}
		}
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	defer rc.Close()
	if err := writeAtomic(dest, rc); err != nil {
		return fmt.Errorf("fetch %s: %w", name, err)
	}
	return nil
}

// laterSegment returns the first archived segment of w's timeline after w, or "".
func (r *Repo) laterSegment(ctx context.Context, w walName) (string, error) {
	for e, err := range r.store.List(ctx, r.walPrefix()+w.name[:8]) {
		if err != nil {
			return "", err
		}
		o, perr := parseWALName(strings.TrimPrefix(e.Key, r.walPrefix()))
		if perr == nil && o.kind == walSegment && o.tli == w.tli && o.pos() > w.pos() {
			return o.name, nil
		}
	}
	return "", nil
}

// writeAtomic copies src to a temporary file beside dest and renames it into
// place after src ended without error and the file was synced.
func writeAtomic(dest string, src io.Reader) (err error) {
	dir, base := filepath.Split(dest)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".lifeline-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = io.CopyBuffer(f, src, make([]byte, 1<<20)); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), dest)
}

// FatalExitCode is the exit status of a restore_command that must stop
// recovery: PostgreSQL treats an exit status above 125 as fatal (FATAL
// "could not restore file ... from archive") instead of as the end of the
// archive.
const FatalExitCode = 200

// FetchExitCode is the exit status `wal-fetch` should end with after
// FetchWAL returned err: 0 on success; 1 when the file is not in the archive
// (PostgreSQL then ends recovery quietly; print nothing); FatalExitCode for
// anything else (a gap, a damaged object, a wrong key, an unreachable
// repository), so that PostgreSQL stops instead of promoting a database
// without that WAL. The caller prints err to stderr, which PostgreSQL logs.
func FetchExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrNotFound) && !errors.Is(err, ErrWALGap):
		return 1
	default:
		return FatalExitCode
	}
}

// PushExitCode is the exit status `wal-push` should end with: 0 on success,
// 1 otherwise (PostgreSQL keeps the segment and retries).
func PushExitCode(err error) int {
	if err == nil {
		return 0
	}
	return 1
}

// FetchHistoriesAfter copies into dir the history files of the timelines
// after tli that the archive holds, up to the first it does not, and
// returns their paths. A standby about to be promoted gets them in pg_wal,
// where PostgreSQL looks when it picks the new timeline, so that the
// promotion picks one nobody used without asking the archive itself.
func (r *Repo) FetchHistoriesAfter(ctx context.Context, tli uint32, dir string) ([]string, error) {
	var paths []string
	for next := tli + 1; ; next++ {
		name := historyName(next)
		dest := filepath.Join(dir, name)
		err := r.FetchWAL(ctx, name, dest)
		if errors.Is(err, ErrNotFound) {
			return paths, nil
		}
		if err != nil {
			return paths, err
		}
		paths = append(paths, dest)
	}
}

// TimelineAfter reports whether the archive holds the history file of the
// timeline after tli: a promotion must then look in the archive to pick a
// timeline nobody used, as PostgreSQL does through restore_command.
func (r *Repo) TimelineAfter(ctx context.Context, tli uint32) (bool, error) {
	_, err := r.store.Stat(ctx, r.walKey(historyName(tli+1)))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, objstore.ErrNotFound):
		return false, nil
	default:
		return false, fmt.Errorf("timeline %d in the archive: %w", tli+1, err)
	}
}
