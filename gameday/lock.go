package gameday

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// LockFile serialises local topologies on a machine. It is the file that
// internal/topotest locks for the tests: two six-node topologies on a
// two-core machine starve each other's etcd heartbeats and leases, so a
// game day that starts a topology waits for the tests' and the reverse.
func LockFile() string { return filepath.Join(os.TempDir(), "lifeline-topotest.lock") }

// lockMachine takes the machine-wide topology lock; the returned function
// releases it.
func lockMachine(log io.Writer) (func(), error) {
	f, err := os.OpenFile(LockFile(), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("topology lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		fmt.Fprintf(log, "waiting for another topology on this machine to stop (lock %s)...\n", LockFile())
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("topology lock: %w", err)
		}
	}
	return func() { f.Close() }, nil
}
