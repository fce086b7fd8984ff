package gameday

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Children are the processes a game day started (its topologies), so that
// a command can pass a second Ctrl-C on to them.
type Children struct {
	mu    sync.Mutex
	procs map[*os.Process]bool
}

func (c *Children) add(p *os.Process) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs == nil {
		c.procs = map[*os.Process]bool{}
	}
	c.procs[p] = true
}

func (c *Children) remove(p *os.Process) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.procs, p)
}

// Signal sends sig to every process started and not yet stopped.
func (c *Children) Signal(sig os.Signal) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.procs {
		_ = p.Signal(sig)
	}
}

// upProcess is a `lifeline up` the game day started.
type upProcess struct {
	cmd      *exec.Cmd
	done     chan struct{}
	children *Children
}

// startUp runs `lifeline up -f SPEC --data-dir DIR` in its own process
// group, its output in logFile, and waits until the topology is ready.
func startUp(ctx context.Context, binary, specFile, dataDir, logFile string, children *Children) (*upProcess, error) {
	logf, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "up", "-f", specFile, "--data-dir", dataDir)
	// Its own group: a Ctrl-C reaches the game day, which heals its faults
	// before it stops the topology.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start lifeline up: %w", err)
	}
	u := &upProcess{cmd: cmd, done: make(chan struct{}), children: children}
	children.add(cmd.Process)
	ready := make(chan struct{})
	var tail []string
	var mu sync.Mutex
	go func() {
		defer logf.Close()
		sc := bufio.NewScanner(out)
		var once sync.Once
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logf, line)
			mu.Lock()
			if tail = append(tail, line); len(tail) > 20 {
				tail = tail[1:]
			}
			mu.Unlock()
			if strings.Contains(line, " is up (") {
				once.Do(func() { close(ready) })
			}
		}
		_ = cmd.Wait()
		children.remove(cmd.Process)
		close(u.done)
	}()
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(tail, "\n")
	}
	select {
	case <-ready:
		return u, nil
	case <-u.done:
		return nil, fmt.Errorf("lifeline up exited before the topology was ready:\n%s", last())
	case <-ctx.Done():
		u.stop(io.Discard)
		return nil, ctx.Err()
	case <-time.After(3 * time.Minute):
		u.stop(io.Discard)
		return nil, fmt.Errorf("lifeline up not ready after 3m:\n%s", last())
	}
}

// stop asks up to stop everything it runs and waits; a hung up gets
// SIGKILL for its process group after 2 minutes.
func (u *upProcess) stop(log io.Writer) {
	select {
	case <-u.done:
		return
	default:
	}
	fmt.Fprintln(log, "stopping the topology...")
	_ = u.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-u.done:
	case <-time.After(2 * time.Minute):
		fmt.Fprintln(log, "lifeline up did not stop in 2m; killing it")
		_ = syscall.Kill(-u.cmd.Process.Pid, syscall.SIGKILL)
		<-u.done
	}
}
