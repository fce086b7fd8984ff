package gameday

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/lifeline-dr/lifeline/backup"
)

// archiveDown makes a region's backup repository refuse writes: every
// directory of a file:// repository loses its write bits, so PostgreSQL's
// archive_command (run as the unprivileged postgres user) cannot store WAL
// there and the archive falls behind, as with a full or read-only object
// store. Its heal gives every directory back the mode it had. region is a
// region or active (the primary's region when it runs).
type archiveDown struct {
	bound
	target string
	region string
	modes  map[string]fs.FileMode
}

func init() {
	registerFault("archive-down", faultType{keys: []string{"region"}, make: func(p *params) Fault {
		f := &archiveDown{target: p.String("region", "active")}
		if f.target != "active" && !nameRe.MatchString(f.target) {
			p.Errorf("region", "region %q: want a region or active", f.target)
		}
		return f
	}})
}

func (f *archiveDown) Name() string     { return "archive-down" }
func (f *archiveDown) Describe() string { return f.region }

func (f *archiveDown) dir() (string, error) {
	_, w, err := f.env.topology()
	if err != nil {
		return "", err
	}
	raw := backup.RepoURL(w, f.region, f.env.DataDir)
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "file" {
		return "", fmt.Errorf("repository %s: archive-down works on file:// repositories only", raw)
	}
	return u.Path, nil
}

func (f *archiveDown) prepare(ctx context.Context) error {
	region, err := f.env.region(ctx, f.target)
	if err != nil {
		return fmt.Errorf("archive-down: %w", err)
	}
	f.region = region
	return nil
}

func (f *archiveDown) Inject(ctx context.Context) error {
	if f.region == "" {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	region := f.region
	dir, err := f.dir()
	if err != nil {
		return fmt.Errorf("archive-down %s: %w", region, err)
	}
	f.modes = map[string]fs.FileMode{}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f.modes[path] = info.Mode().Perm()
		return os.Chmod(path, info.Mode().Perm()&^0o222)
	})
	if err != nil {
		return fmt.Errorf("archive-down %s: %w", region, err)
	}
	return nil
}

func (f *archiveDown) Heal(context.Context) error {
	var errs []string
	for path, mode := range f.modes {
		if err := os.Chmod(path, mode); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err.Error())
			continue
		}
		delete(f.modes, path)
	}
	if len(errs) > 0 {
		return fmt.Errorf("heal archive-down %s: %s", f.region, strings.Join(errs, "; "))
	}
	return nil
}
