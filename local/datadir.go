package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/spec"
)

// Files of a local topology's data directory.
const (
	fingerprintFile = "topology.fingerprint"
	topologyFile    = "topology.json"
	lockFile        = "up.lock"
	socketFile      = "control.sock"
	logDir          = "logs"
)

// DataDir is the directory a local topology lives in.
type DataDir struct {
	Path string
	lock *os.File
}

// OpenDataDir prepares dir for t: a new directory is claimed for it, and a
// directory made from another spec is refused, naming what differs.
func OpenDataDir(dir string, t *lifeline.Topology) (*DataDir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	// Logs are the owner's; the directory above lets PostgreSQL's OS user
	// through to its own directories, without listing anything.
	if err := os.MkdirAll(filepath.Join(abs, logDir), 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", abs, err)
	}
	if err := os.Chmod(abs, 0o711); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", abs, err)
	}
	d := &DataDir{Path: abs}
	if err := d.claim(); err != nil {
		return nil, err
	}
	fp := filepath.Join(abs, fingerprintFile)
	have, err := os.ReadFile(fp)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if entries, _ := os.ReadDir(filepath.Join(abs, "nodes")); len(entries) > 0 {
			d.Close()
			return nil, fmt.Errorf("data dir %s holds nodes but no %s: it was not made by lifeline up; use an empty directory", abs, fingerprintFile)
		}
		if err := os.WriteFile(fp, []byte(t.Fingerprint()), 0o644); err != nil {
			d.Close()
			return nil, err
		}
	case err != nil:
		d.Close()
		return nil, err
	case string(have) != t.Fingerprint():
		d.Close()
		return nil, fmt.Errorf("data dir %s was made from another spec; use another --data-dir, or remove it to start over.\n%s", abs, diff(string(have), t.Fingerprint()))
	}
	b, err := json.MarshalIndent(t, "", "  ")
	if err != nil {
		d.Close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(abs, topologyFile), b, 0o644); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// claim takes the directory's lock so that two `up`s never share it.
func (d *DataDir) claim() error {
	f, err := os.OpenFile(filepath.Join(d.Path, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(f.Name())
		f.Close()
		return fmt.Errorf("data dir %s is in use by another lifeline up (pid %s); stop it with `lifeline down --data-dir %s`",
			d.Path, strings.TrimSpace(string(pid)), d.Path)
	}
	_ = f.Truncate(0)
	_, _ = fmt.Fprintf(f, "%d\n", os.Getpid())
	d.lock = f
	return nil
}

// Close releases the directory.
func (d *DataDir) Close() {
	if d.lock != nil {
		d.lock.Close()
		d.lock = nil
	}
}

// Socket is the control socket of the `up` running on this directory.
func (d *DataDir) Socket() string { return filepath.Join(d.Path, socketFile) }

// LogFile is where a process of the topology logs.
func (d *DataDir) LogFile(name string) string {
	return filepath.Join(d.Path, logDir, strings.ReplaceAll(name, "/", "-")+".log")
}

// SpecFile is where an operator's data directory of a distributed
// topology holds its spec, for commands run from a workstation.
const SpecFile = "lifeline.yaml"

// LoadTopology reads the topology that `up` recorded in a data directory,
// for commands run from another terminal; without one (a workstation of a
// distributed topology), the spec in the directory's lifeline.yaml.
func LoadTopology(dir string) (*lifeline.Topology, error) {
	b, err := os.ReadFile(filepath.Join(dir, topologyFile))
	if errors.Is(err, os.ErrNotExist) {
		if _, serr := os.Stat(filepath.Join(dir, SpecFile)); serr == nil {
			return spec.Load(filepath.Join(dir, SpecFile))
		}
		return nil, fmt.Errorf("no topology in %s: start one with `lifeline up -f SPEC --data-dir %s`, or put a distributed topology's spec in %s", dir, dir, filepath.Join(dir, SpecFile))
	}
	if err != nil {
		return nil, err
	}
	var t lifeline.Topology
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, topologyFile), err)
	}
	return &t, nil
}

func diff(have, want string) string {
	h, w := strings.Split(have, "\n"), strings.Split(want, "\n")
	in := func(lines []string, l string) bool {
		for _, x := range lines {
			if x == l {
				return true
			}
		}
		return false
	}
	var b strings.Builder
	for _, l := range h {
		if l != "" && !in(w, l) {
			fmt.Fprintf(&b, "  data dir: %s\n", l)
		}
	}
	for _, l := range w {
		if l != "" && !in(h, l) {
			fmt.Fprintf(&b, "  spec:     %s\n", l)
		}
	}
	return strings.TrimRight(b.String(), "\n")
}
