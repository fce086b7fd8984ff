package backup

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/objstore"
	"github.com/lifeline-dr/lifeline/postgres"
)

// RepoURL is the repository of a workload in a region: the spec's
// backups.repository with {region} and {data} (the topology's data
// directory) filled in.
func RepoURL(w *lifeline.Workload, region, dataDir string) string {
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		abs = dataDir
	}
	return strings.NewReplacer("{region}", region, "{data}", abs).Replace(w.Backups.Repository)
}

// Key returns the workload's encryption key, or nil when backups are not
// encrypted.
func Key(w *lifeline.Workload) ([]byte, error) {
	if !w.Backups.Key.Set() {
		return nil, nil
	}
	secret, err := w.Backups.Key.Resolve()
	if err != nil {
		return nil, fmt.Errorf("backups key: %w", err)
	}
	return objstore.KeyFromSecret(secret)
}

// OpenRegion opens a workload's repository in a region.
func OpenRegion(ctx context.Context, w *lifeline.Workload, region, dataDir string) (*Repo, error) {
	key, err := Key(w)
	if err != nil {
		return nil, err
	}
	u := RepoURL(w, region, dataDir)
	if err := prepareFile(u, w.Name, nil); err != nil {
		return nil, err
	}
	r, err := Open(ctx, u, objstore.Options{Key: key}, w.Name)
	if err != nil {
		return nil, fmt.Errorf("repository of %s in %s: %w", w.Name, region, err)
	}
	return r, nil
}

// PrepareFileRepo makes a file:// repository's WAL directory writable by
// PostgreSQL's OS user, which runs archive_command: directories that a root
// process creates are not. The repository becomes that user's, with mode
// 0700; what the agent (root) writes into it later takes the same owner
// (objstore). Other URLs are left alone.
func PrepareFileRepo(rawURL, workload string, owner *postgres.Owner) error {
	return prepareFile(rawURL, workload, owner)
}

func prepareFile(rawURL, workload string, owner *postgres.Owner) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "file" {
		return nil
	}
	wal := filepath.Join(u.Path, workload, "wal")
	// Owner only: the repository holds every byte of the database. The
	// directories above it only let PostgreSQL's OS user through.
	if err := os.MkdirAll(filepath.Dir(u.Path), 0o711); err != nil {
		return fmt.Errorf("repository %s: %w", rawURL, err)
	}
	if err := os.MkdirAll(wal, 0o700); err != nil {
		return fmt.Errorf("repository %s: %w", rawURL, err)
	}
	if owner == nil {
		return nil
	}
	for _, d := range []string{u.Path, filepath.Join(u.Path, workload), wal} {
		if err := os.Chown(d, int(owner.UID), int(owner.GID)); err != nil {
			return fmt.Errorf("repository %s: %w", rawURL, err)
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return fmt.Errorf("repository %s: %w", rawURL, err)
		}
	}
	return nil
}

// ArchiveConfig is what `lifeline wal-push` and `wal-fetch` read: they run
// as PostgreSQL's OS user with PostgreSQL's environment, so everything
// they need is in a file only that user can read.
type ArchiveConfig struct {
	URL      string `json:"url"`
	Workload string `json:"workload"`
	// Key is the hex encryption key; empty when backups are not encrypted.
	Key string `json:"key,omitempty"`
	// Standby makes a gap in the archive end recovery quietly instead of
	// stopping the server: a standby that also streams need not stop.
	Standby bool `json:"standby,omitempty"`
}

// WriteArchiveConfig writes the file with mode 0600, owned by owner.
func WriteArchiveConfig(path string, c ArchiveConfig, owner *postgres.Owner) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if owner != nil {
		if err := os.Chown(tmp, int(owner.UID), int(owner.GID)); err != nil {
			return err
		}
	}
	return os.Rename(tmp, path)
}

// ReadArchiveConfig reads the file and opens its repository.
func ReadArchiveConfig(ctx context.Context, path string) (*Repo, ArchiveConfig, error) {
	var c ArchiveConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, c, fmt.Errorf("%s: %w", path, err)
	}
	var key []byte
	if c.Key != "" {
		if key, err = hex.DecodeString(c.Key); err != nil {
			return nil, c, fmt.Errorf("%s: key: %w", path, err)
		}
	}
	r, err := Open(ctx, c.URL, objstore.Options{Key: key}, c.Workload)
	return r, c, err
}
