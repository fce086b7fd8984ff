package postgres

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// ErrNoBinaries is returned when no PostgreSQL server binaries are found.
var ErrNoBinaries = errors.New("no PostgreSQL server binaries found: install them (Debian/Ubuntu: apt-get install postgresql; " +
	"RHEL: dnf install postgresql-server) or set LIFELINE_PG_BIN to the directory holding postgres, initdb and pg_basebackup")

// FindBin finds the directory of the PostgreSQL server binaries:
// $LIFELINE_PG_BIN, then `pg_config --bindir`, then the newest
// /usr/lib/postgresql/*/bin. A directory counts only if it holds `postgres`
// and `initdb` (Debian's pg_config may come from the client package alone).
func FindBin() (string, error) {
	if dir := os.Getenv("LIFELINE_PG_BIN"); dir != "" {
		if !hasServer(dir) {
			return "", fmt.Errorf("LIFELINE_PG_BIN=%s holds no postgres and initdb binaries", dir)
		}
		return dir, nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if dir := strings.TrimSpace(string(out)); hasServer(dir) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, dir := range dirs {
		if hasServer(dir) {
			return dir, nil
		}
	}
	return "", ErrNoBinaries
}

func hasServer(dir string) bool {
	for _, b := range []string{"postgres", "initdb", "pg_basebackup"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.IsDir() {
			return false
		}
	}
	return true
}

func versionOf(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// Owner is the OS user PostgreSQL runs as. PostgreSQL refuses to run as
// root, so when Lifeline runs as root (CI, containers) the server and its
// tools run as an unprivileged system user instead.
type Owner struct {
	Name string
	UID  uint32
	GID  uint32
	Home string
}

// DefaultOSUser is the unprivileged user PostgreSQL runs as under root.
const DefaultOSUser = "postgres"

// ResolveOwner returns nil when the current user may run PostgreSQL itself,
// or the system user to run it as when running as root, creating that user
// if it is missing.
func ResolveOwner(name string) (*Owner, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	if name == "" {
		name = DefaultOSUser
	}
	u, err := user.Lookup(name)
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return nil, fmt.Errorf("look up user %s: %w", name, err)
		}
		out, err := exec.Command("useradd", "--system", "--user-group", "--home-dir", "/var/lib/postgresql",
			"--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("create system user %s to run PostgreSQL (it refuses to run as root): %v: %s", name, err, out)
		}
		if u, err = user.Lookup(name); err != nil {
			return nil, fmt.Errorf("look up user %s: %w", name, err)
		}
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &Owner{Name: name, UID: uint32(uid), GID: uint32(gid), Home: u.HomeDir}, nil
}

// credential is what exec needs to drop to the owner.
func (o *Owner) credential() *syscall.Credential {
	if o == nil {
		return nil
	}
	return &syscall.Credential{Uid: o.UID, Gid: o.GID}
}

// Chown gives a tree to the owner.
func (o *Owner) Chown(root string) error {
	if o == nil {
		return nil
	}
	return filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(o.UID), int(o.GID))
	})
}

// CheckReachable fails when the owner cannot reach dir because an ancestor
// directory is closed to other users: a common surprise under root, where
// temporary directories are created with mode 0700.
func (o *Owner) CheckReachable(dir string) error {
	if o == nil {
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	for p := filepath.Dir(abs); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("check %s: %w", p, err)
		}
		sys, _ := st.Sys().(*syscall.Stat_t)
		mode := st.Mode().Perm()
		ok := mode&0o001 != 0 ||
			(sys != nil && sys.Uid == o.UID && mode&0o100 != 0) ||
			(sys != nil && sys.Gid == o.GID && mode&0o010 != 0)
		if !ok {
			return fmt.Errorf("PostgreSQL runs as user %s, which cannot enter %s (mode %v): run `chmod o+x %s` or choose a data directory elsewhere", o.Name, p, mode, p)
		}
		if p == "/" {
			return nil
		}
	}
}
