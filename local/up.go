package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/internal/netns"
	"github.com/lifeline-dr/lifeline/internal/proc"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/wan"
)

// Options configure `lifeline up`.
type Options struct {
	// SpecFile is handed to every agent; the topology must have been parsed from it.
	SpecFile string
	DataDir  string
	// Binary is the lifeline executable to run agents with (default: this one).
	Binary string
	// Out receives progress lines for the operator.
	Out    io.Writer
	Logger *slog.Logger
	// Prepare, when set, runs once the data directory is claimed, before
	// any process starts; Ready once every database is ready, before up
	// says the topology is up. (The operator surface's certificate and
	// admin token.)
	Prepare func(dataDir string) error
	Ready   func(ctx context.Context, dataDir string) error
	// Insecure runs without TLS, unless the data directory already holds
	// certificates (to measure what TLS costs; never the default).
	Insecure bool
	// Isolation is "netns", "loopback" or "auto" (the default: netns
	// where it can be used, that is as root on Linux, else loopback with a
	// notice). A data directory keeps the isolation it was built with.
	Isolation string
}

// Runner runs a local topology: the WAN links, the witness, one agent
// process per node, and a control socket for `node` and `link` commands.
type Runner struct {
	t    *lifeline.Topology
	opts Options
	dir  *DataDir
	wan  *wan.Emulator
	log  *slog.Logger
	out  io.Writer
	sec  *agent.Security // the operator's

	mu    sync.Mutex
	procs map[string]*process
	down  chan struct{}
	once  sync.Once
	exits chan string

	// frozen are the nodes stopped by `node freeze`, with the timer that
	// thaws each.
	frozen map[string]*time.Timer

	// lab holds the network namespaces of a netns topology (nil on
	// loopback), and doors the listeners opened in them for the router.
	lab   *netns.Lab
	doors []handedDoor
}

// routerName is the router's process name among the nodes.
const routerName = "router"

type process struct {
	name    string
	args    []string
	cmd     *exec.Cmd
	done    <-chan struct{}
	state   string // running, stopped, killed, exited
	started time.Time
	err     error
}

// Up builds or resumes the topology and serves until ctx ends or `lifeline
// down` asks; then it stops every process it started.
func Up(ctx context.Context, t *lifeline.Topology, opts Options) error {
	if t.Mode != lifeline.ModeLocal {
		return fmt.Errorf("lifeline up runs local topologies; %s is mode %s: run `lifeline agent --node REGION/ZONE` on each host", opts.SpecFile, t.Mode)
	}
	if opts.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		opts.Binary = exe
	}
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	spec, err := filepath.Abs(opts.SpecFile)
	if err != nil {
		return err
	}
	opts.SpecFile = spec
	if _, err := postgres.FindBin(); err != nil {
		return err
	}
	owner, err := postgres.ResolveOwner("")
	if err != nil {
		return err
	}
	absDir, err := filepath.Abs(opts.DataDir)
	if err != nil {
		return err
	}
	iso, notice, err := chooseIsolation(opts.Isolation, t, absDir)
	if err != nil {
		return err
	}
	if notice != "" {
		fmt.Fprintln(opts.Out, "notice: "+notice)
	}
	t.Isolation = iso
	dir, err := OpenDataDir(opts.DataDir, t)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := recordIsolation(dir.Path, iso); err != nil {
		return err
	}
	if err := owner.CheckReachable(filepath.Join(dir.Path, "nodes")); err != nil {
		return err
	}
	if entries, _ := os.ReadDir(filepath.Join(dir.Path, "nodes")); len(entries) > 0 && !certs.HasAuthority(certs.Dir(dir.Path)) && !opts.Insecure {
		// Its etcd members hold their peers' http:// URLs: TLS cannot be
		// added under them.
		dir.Close()
		return fmt.Errorf("data dir %s was made without TLS (--insecure, or by an older lifeline): run up --insecure on it, or use a new data directory", dir.Path)
	}
	if !opts.Insecure {
		// Secure by default: an authority of this data directory, and a
		// certificate for every process of the topology.
		issued, err := certs.EnsureTopology(certs.Dir(dir.Path), t)
		if err != nil {
			dir.Close()
			return fmt.Errorf("certificates: %w", err)
		}
		if len(issued) > 0 {
			fmt.Fprintf(opts.Out, "certificates: issued %d in %s (mutual TLS for etcd and PostgreSQL)\n", len(issued), certs.Dir(dir.Path))
		}
	}
	sec, err := agent.LoadSecurity(t, dir.Path, certs.Operator)
	if err != nil {
		dir.Close()
		return err
	}
	if opts.Prepare != nil {
		if err := opts.Prepare(dir.Path); err != nil {
			return err
		}
	}
	r := &Runner{
		t: t, opts: opts, dir: dir, log: opts.Logger, out: opts.Out, sec: sec,
		procs: map[string]*process{}, frozen: map[string]*time.Timer{}, down: make(chan struct{}), exits: make(chan string, 16),
	}
	return r.run(ctx)
}

func (r *Runner) printf(format string, args ...any) {
	fmt.Fprintf(r.out, format+"\n", args...)
}

func (r *Runner) run(ctx context.Context) error {
	start := time.Now()
	r.wan = wan.New(r.t, r.log)
	if err := r.wan.Start(ctx); err != nil {
		return fmt.Errorf("%w (is another topology running on these addresses?)", err)
	}
	defer r.wan.Close()
	if r.t.Isolation == lifeline.IsolationNetns {
		defer r.closeLab() // after every process has stopped (deferred later, run sooner)
		if err := r.buildLab(); err != nil {
			return err
		}
		if lat := r.t.Links.CrossRegion.Latency; lat > 0 {
			r.printf("wan: every packet between regions delayed %s each way", lat)
		}
	} else if lat := r.t.Links.CrossRegion.Latency; lat > 0 {
		r.printf("wan: %d routes, cross-region latency %s each way", len(r.wan.Routes()), lat)
	}
	srv, err := r.serveControl()
	if err != nil {
		return err
	}
	defer srv.Close()

	defer r.stopAll()
	if r.t.Witness != nil && r.t.Control.Embedded() {
		if err := r.startProcess(lifeline.WitnessSite); err != nil {
			return err
		}
	}
	for _, id := range r.t.Nodes() {
		if err := r.startProcess(id.String()); err != nil {
			return err
		}
	}
	if err := r.startProcess(routerName); err != nil {
		return err
	}
	r.printf("started %d agents; logs in %s", len(r.t.Nodes()), filepath.Join(r.dir.Path, logDir))
	if err := r.waitReady(ctx, start); err != nil {
		return err
	}
	if r.opts.Ready != nil {
		if err := r.opts.Ready(ctx, r.dir.Path); err != nil {
			return err
		}
	}
	r.printf("topology %s is up (%.1fs). In another terminal: lifeline status --data-dir %s", r.t.Name, time.Since(start).Seconds(), r.dir.Path)
	for {
		select {
		case <-ctx.Done():
			r.printf("stopping (Ctrl-C again to abort)...")
			return nil
		case <-r.down:
			r.printf("stopping: asked by lifeline down...")
			return nil
		case name := <-r.exits:
			r.printf("warning: %s exited on its own; see %s (lifeline node start %s brings it back)", name, r.dir.LogFile(name), name)
		}
	}
}

// startProcess starts the agent of a node, or the witness.
func (r *Runner) startProcess(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.procs[name]; ok && p.state == "running" {
		return fmt.Errorf("%s is already running (pid %d)", name, p.cmd.Process.Pid)
	}
	args := []string{"agent", "--node", name}
	switch name {
	case lifeline.WitnessSite:
		args = []string{"witness"}
	case routerName:
		args = []string{"router"}
	}
	args = append(args, "-f", r.opts.SpecFile, "--data-dir", r.dir.Path)
	logf, err := os.OpenFile(r.dir.LogFile(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(r.opts.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: Ctrl-C reaches `up` alone, which stops nodes
	// in order, and `node kill` takes the agent and its PostgreSQL at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &process{name: name, args: args, cmd: cmd, state: "running", started: time.Now()}
	start := func(cmd *exec.Cmd, onExit func(error)) (<-chan struct{}, error) {
		return proc.Start(cmd, syscall.SIGTERM, onExit)
	}
	if r.lab != nil {
		start = func(cmd *exec.Cmd, onExit func(error)) (<-chan struct{}, error) { return r.startIn(name, cmd, onExit) }
	}
	done, err := start(cmd, func(err error) {
		logf.Close()
		r.mu.Lock()
		p.err = err
		wasRunning := p.state == "running"
		if wasRunning {
			p.state = "exited"
		}
		r.mu.Unlock()
		if wasRunning {
			select {
			case r.exits <- name:
			default:
			}
		}
	})
	if err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", name, err)
	}
	p.done = done
	r.procs[name] = p
	r.log.Info("process started", "name", name, "pid", cmd.Process.Pid)
	return nil
}

// signalNode stops a node: "kill" sends SIGKILL to its whole process group
// (the agent, its etcd member and its PostgreSQL die at once, as when a zone
// is lost); "stop" asks the agent to shut down cleanly.
func (r *Runner) signalNode(ctx context.Context, name, action string) error {
	r.mu.Lock()
	p, ok := r.procs[name]
	if !ok {
		r.mu.Unlock()
		return fmt.Errorf("node %q: %w (nodes: %s)", name, lifeline.ErrNotFound, strings.Join(r.names(), ", "))
	}
	if p.state != "running" {
		r.mu.Unlock()
		return fmt.Errorf("node %s is not running (%s)", name, p.state)
	}
	pid := p.cmd.Process.Pid
	if action == "kill" {
		p.state = "killed"
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	} else {
		p.state = "stopped"
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	r.mu.Unlock()
	r.log.Warn("node "+action, "name", name, "pid", pid)
	select {
	case <-p.done:
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(90 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-p.done
	}
	if action == "kill" {
		// The agent's PostgreSQL is in its process group; wait until the
		// postmaster is gone too, so the caller sees a dead node.
		waitGroupGone(pid)
	}
	return nil
}

// waitGroupGone waits (up to 10s) until no process of a group is left.
func waitGroupGone(pgid int) {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pid is the process id of a running node's agent, or 0.
func (r *Runner) pid(name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.procs[name]; ok && p.state == "running" {
		return p.cmd.Process.Pid
	}
	return 0
}

func (r *Runner) names() []string {
	var names []string
	for n := range r.procs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NodeState is one process of the topology as `up` sees it.
type NodeState struct {
	Name  string `json:"name"`
	State string `json:"state"`
	PID   int    `json:"pid"`
}

func (r *Runner) states() []NodeState {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []NodeState
	for _, n := range r.names() {
		p := r.procs[n]
		s := NodeState{Name: n, State: p.state}
		if _, frozen := r.frozen[n]; frozen && p.state == "running" {
			s.State = "frozen"
		}
		if p.state == "running" {
			s.PID = p.cmd.Process.Pid
		}
		out = append(out, s)
	}
	return out
}

// stopAll stops the agents (each stops its PostgreSQL cleanly), then the witness.
func (r *Runner) stopAll() {
	r.mu.Lock()
	var agents, witness []*process
	for _, p := range r.procs {
		if p.state != "running" {
			continue
		}
		p.state = "stopped"
		if t, frozen := r.frozen[p.name]; frozen {
			// A frozen node could not act on SIGTERM.
			t.Stop()
			delete(r.frozen, p.name)
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
		}
		if p.name == lifeline.WitnessSite || p.name == routerName {
			witness = append(witness, p)
		} else {
			agents = append(agents, p)
		}
	}
	r.mu.Unlock()
	for _, group := range [][]*process{agents, witness} {
		for _, p := range group {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range group {
			select {
			case <-p.done:
			case <-time.After(2 * time.Minute):
				r.printf("%s did not stop in 2m; killing it", p.name)
				_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
				<-p.done
			}
			waitGroupGone(p.cmd.Process.Pid)
		}
	}
	r.printf("stopped")
}

// waitReady waits until every database node reports healthy, printing each
// as it gets there. An agent that exits meanwhile fails the start.
func (r *Runner) waitReady(ctx context.Context, start time.Time) error {
	s, err := r.sec.ConnectStore(nil)
	if err != nil {
		return err
	}
	defer s.Close()
	ready := map[string]bool{}
	last := time.Now()
	for want := -1; want < 0 || len(ready) < want; {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-r.down:
			return errors.New("stopped before the topology was ready")
		case name := <-r.exits:
			return fmt.Errorf("%s exited while starting:\n%s", name, tail(r.dir.LogFile(name), 15))
		case <-time.After(300 * time.Millisecond):
		}
		total := 0
		for i := range r.t.Workloads {
			w := &r.t.Workloads[i]
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, _, found, err := s.State(qctx, w.Name)
			var reports map[string]lifeline.NodeStatus
			if err == nil && found {
				reports, err = s.Statuses(qctx, w.Name)
			}
			cancel()
			if err != nil || !found {
				total = -1
				continue
			}
			nodes := r.t.DatabaseNodesIn(st)
			if total >= 0 {
				total += len(nodes)
			}
			for _, id := range nodes {
				key := w.Name + "@" + id.String()
				// Reports of a previous run linger until their lease expires:
				// only the agent started now counts.
				if st, ok := reports[id.String()]; ok && st.Healthy && !ready[key] && st.AgentPID == r.pid(id.String()) {
					ready[key] = true
					r.printf("  %-28s %-13s ready  (%4.1fs)", key, st.Role, time.Since(start).Seconds())
				}
			}
		}
		want = total
		if time.Since(last) > 15*time.Second {
			last = time.Now()
			if want < 0 {
				r.printf("  waiting: %d databases ready; the workloads' state cannot be read yet", len(ready))
			} else {
				r.printf("  waiting: %d of %d databases ready", len(ready), want)
			}
		}
	}
	return nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
