package objstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"gocloud.dev/blob"
)

// fileRepo is what a Store needs to make file:// writes durable and private:
// the repository's directory, and the owner every file and directory in it
// takes.
//
// An object is written to a temporary file beside its name with mode 0600,
// fsynced, renamed into place, and its directory fsynced, so that a
// successful Put survives a power loss. Directories are created with mode
// 0700. When the writer runs as root, what it creates is given to the owner
// of the repository's directory: WAL is pushed by PostgreSQL's OS user and
// base backups and cross-region copies by the agent (root), and both must
// read what the other wrote without opening the repository to anyone else.
type fileRepo struct {
	root     string
	uid, gid int
	chown    bool
}

// beforeRename, when set (by tests), runs once an object's temporary file
// is written and synced, just before it is renamed into place.
var beforeRename func(tmp string)

// openFileRepo prepares the directory of a file:// URL (already normalised).
func openFileRepo(u *url.URL) (*fileRepo, error) {
	dir := u.Path
	if u.Host == "." {
		dir = "." + dir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(abs)
	if err != nil {
		return nil, err
	}
	f := &fileRepo{root: abs}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		f.uid, f.gid = int(sys.Uid), int(sys.Gid)
		f.chown = sys.Uid != 0 || sys.Gid != 0
	}
	return f, nil
}

// makeFileParents creates the directories above a file:// repository that
// are missing, so that other users may pass through them (mode 0711) to a
// repository they own; the repository's own directory, created when the
// bucket opens, is 0700 like every directory in it.
func makeFileParents(u *url.URL) error {
	dir := u.Path
	if u.Host == "." {
		dir = "." + dir
	}
	return os.MkdirAll(filepath.Dir(filepath.Clean(dir)), 0o711)
}

// missingDirs lists the directories that a write of key would create,
// outermost first.
func (f *fileRepo) missingDirs(key string) []string {
	var missing []string
	for d := filepath.Dir(filepath.Join(f.root, filepath.FromSlash(key))); len(d) > len(f.root); d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append([]string{d}, missing...)
	}
	return missing
}

// prepare is the writer's BeforeWrite: the temporary file and the
// directories just created get their mode and owner before any byte is
// written.
func (f *fileRepo) prepare(created []string, tmp **os.File) func(asFunc func(any) bool) error {
	return func(asFunc func(any) bool) error {
		var file *os.File
		if !asFunc(&file) {
			return errors.New("file repository: no access to the temporary file")
		}
		*tmp = file
		if err := file.Chmod(0o600); err != nil {
			return err
		}
		if !f.chown {
			return nil
		}
		for _, d := range created {
			if err := os.Chown(d, f.uid, f.gid); err != nil {
				return err
			}
		}
		return file.Chown(f.uid, f.gid)
	}
}

// commit makes a written object durable: the temporary file's content
// before the rename, the rename itself (and any directory created for it)
// after. A write-once object (ifNotExist) then removes what earlier writes
// of it left behind.
func (f *fileRepo) commit(w *blob.Writer, tmp *os.File, created []string, ifNotExist bool) error {
	if tmp == nil {
		return errors.New("file repository: the temporary file was not opened")
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", tmp.Name(), err)
	}
	name := tmp.Name()
	if beforeRename != nil {
		beforeRename(name)
	}
	if err := w.Close(); err != nil {
		return err
	}
	dirs := []string{filepath.Dir(name)}
	for _, d := range created {
		dirs = append(dirs, filepath.Dir(d))
	}
	for _, d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	if ifNotExist {
		removeStaleTemps(name)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// removeStaleTemps removes the temporary files of other writes of the
// same write-once object once it exists: a killed writer's, invisible to
// List but taking space, or a concurrent writer's, which needs it no more
// (it finds the object there and reports a conflict or success without
// renaming). tmp is this write's, already renamed.
func removeStaleTemps(tmp string) {
	rest := strings.TrimSuffix(tmp, ".tmp")
	final := rest[:strings.LastIndexByte(rest, '.')]
	matches, _ := filepath.Glob(final + ".*.tmp")
	for _, m := range matches {
		// Only final.<hex>.tmp: final.00000028.backup.<hex>.tmp is
		// another object's write, maybe under way.
		mid := strings.TrimSuffix(strings.TrimPrefix(m, final+"."), ".tmp")
		if m != tmp && isHex(mid) {
			_ = os.Remove(m)
		}
	}
}

func isHex(s string) bool {
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// errTorn marks an object that a crash or a lost write left unfinished,
// holding nothing a write of the same name could destroy.
var errTorn = errors.New("torn object")

// classifyDamaged looks at an object whose header did not read as a
// complete object (stat is Stat's ErrCorrupt error) and says whether it is
// torn: cut short before its header was whole (what it holds is a prefix of
// a header, or zeros, the blocks a power loss left unwritten), or cut short
// after a header that declares exactly want's content. Anything else is
// not ours to overwrite: a header of other content is a conflict, other
// bytes stay corrupt.
func (s *Store) classifyDamaged(ctx context.Context, key string, want header, stat error) error {
	a, err := s.bucket.Attributes(ctx, key)
	if err != nil {
		return stat
	}
	n := min(a.Size, headerLen)
	b := make([]byte, n)
	if n > 0 {
		r, err := s.bucket.NewRangeReader(ctx, key, 0, n, nil)
		if err != nil {
			return stat
		}
		_, err = io.ReadFull(r, b)
		r.Close()
		if err != nil {
			return stat
		}
	}
	if isZero(b) || (n < headerLen && bytes.HasPrefix([]byte(magic), b[:min(n, int64(len(magic)))])) {
		return fmt.Errorf("%w: %d bytes, no complete header", errTorn, a.Size)
	}
	h, _, err := readHeader(bytes.NewReader(b))
	if err != nil || a.Size >= h.storedSize() {
		return stat
	}
	if h.size != want.size || h.sha256 != want.sha256 {
		return fmt.Errorf("%w: a truncated object of %d bytes with SHA-256 %x is stored, new %d bytes with SHA-256 %x",
			ErrConflict, h.size, h.sha256, want.size, want.sha256)
	}
	return fmt.Errorf("%w: %d of %d bytes of the same content", errTorn, a.Size, h.storedSize())
}

// verifyStored reads a stored object that declares the expected content to
// its end. A copy that does not read back whole (a payload a crash
// damaged) is torn: the caller has the intact content to replace it with.
func (s *Store) verifyStored(ctx context.Context, key string) error {
	rc, err := s.Get(ctx, key)
	if err == nil {
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
	}
	if errors.Is(err, ErrCorrupt) {
		return fmt.Errorf("%w: %v", errTorn, err)
	}
	return err
}

func isZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
