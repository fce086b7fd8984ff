package gameday

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/status"
)

// Fault is one kind of failure a game day injects, registered under the
// name a scenario uses (as Toxiproxy's toxics are). Heal must be safe to
// call after a partial run: when Inject failed half-way, or never ran.
type Fault interface {
	Name() string
	Inject(ctx context.Context) error
	Heal(ctx context.Context) error
}

// Action is a step an operator takes during a game day (approve a
// runbook, switch over, restore): a public `lifeline` command.
type Action interface {
	Name() string
	Run(ctx context.Context) error
}

// Describer is a fault or action that can say what it hit or did once it
// ran ("eu-west/a"), for the report.
type Describer interface {
	Describe() string
}

// preparer is a fault that resolves its target ("primary", "active")
// before it is injected: the fault's time is then that of its own command,
// not of the status lookup before it.
type preparer interface {
	prepare(ctx context.Context) error
}

// binder is how the runner hands a fault or action its environment.
type binder interface{ bind(*Env) }

// marker is an action that needs a time a fault recorded.
type marker interface{ needsMark() string }

// bound is embedded by every fault and action.
type bound struct{ env *Env }

func (b *bound) bind(e *Env) { b.env = e }

type faultType struct {
	keys []string
	// needsFor: the fault must say how long it lasts.
	needsFor bool
	// marks are the times the fault records for later actions.
	marks []string
	make  func(*params) Fault
}

type actionType struct {
	keys []string
	make func(*params) Action
}

var (
	faultTypes  = map[string]faultType{}
	actionTypes = map[string]actionType{}
)

// registerFault adds a fault kind; each fault file registers its own.
func registerFault(name string, t faultType) { faultTypes[name] = t }

// registerAction adds an action kind.
func registerAction(name string, t actionType) { actionTypes[name] = t }

// FaultNames lists the registered faults.
func FaultNames() []string { return sortedKeys(faultTypes) }

// ActionNames lists the registered actions.
func ActionNames() []string { return sortedKeys(actionTypes) }

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Commander runs a `lifeline` command against the game day's topology.
type Commander interface {
	Lifeline(ctx context.Context, args ...string) (string, error)
}

// CLI runs the lifeline binary with --data-dir set to the topology's.
type CLI struct {
	Binary  string
	DataDir string
}

// Lifeline runs one command and returns its combined output.
func (c CLI) Lifeline(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.Binary, append(args, "--data-dir", c.DataDir)...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("lifeline %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Env is what faults and actions act on: the topology (through the
// lifeline commands), the workload, and the times faults recorded.
type Env struct {
	// DataDir is the topology's data directory.
	DataDir  string
	Workload string
	CLI      Commander
	// Binary is the lifeline executable, for actions that keep a command
	// running (a side instance).
	Binary string
	// Scratch is a directory for what actions build (restored copies).
	Scratch string
	Logf    func(format string, args ...any)

	mu    sync.Mutex
	marks map[string]time.Time
}

// Mark records a named time (e.g. "before-delete").
func (e *Env) Mark(name string, t time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.marks == nil {
		e.marks = map[string]time.Time{}
	}
	e.marks[name] = t
}

// MarkOf returns a recorded time.
func (e *Env) MarkOf(name string) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.marks[name]
	return t, ok
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// Status reads the workload's state with `lifeline status --json`. A call
// can time out through a partition (a member cut off waits for a quorum),
// so it is tried again a few times.
func (e *Env) Status(ctx context.Context) (status.Workload, error) {
	var last error
	for attempt := 0; attempt < 5; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return status.Workload{}, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		out, err := e.CLI.Lifeline(ctx, "status", "--json")
		if err != nil {
			last = err
			continue
		}
		var rep status.Report
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			return status.Workload{}, fmt.Errorf("status --json: %w", err)
		}
		for _, w := range rep.Workloads {
			if w.Name == e.Workload || (e.Workload == "" && len(rep.Workloads) == 1) {
				return w, nil
			}
		}
		return status.Workload{}, fmt.Errorf("status: no workload %q in %s", e.Workload, rep.Name)
	}
	return status.Workload{}, last
}

// node resolves a node reference: "primary" is the current primary.
func (e *Env) node(ctx context.Context, ref string) (string, error) {
	if ref != "primary" {
		return ref, nil
	}
	w, err := e.Status(ctx)
	if err != nil {
		return "", fmt.Errorf("find the primary: %w", err)
	}
	if w.Primary == "" {
		return "", errors.New("find the primary: the workload has none")
	}
	return w.Primary, nil
}

// party resolves a link end: "primary" is the primary's node, "active"
// its region; anything else is taken as given.
func (e *Env) party(ctx context.Context, ref string) (string, error) {
	switch ref {
	case "primary":
		return e.node(ctx, ref)
	case "active":
		return e.region(ctx, ref)
	}
	return ref, nil
}

// region resolves a region reference: "active" is the primary's region.
func (e *Env) region(ctx context.Context, ref string) (string, error) {
	if ref != "active" {
		return ref, nil
	}
	n, err := e.node(ctx, "primary")
	if err != nil {
		return "", err
	}
	r, _, _ := strings.Cut(n, "/")
	return r, nil
}

// alreadyRunning tells a `node start` refused because the node runs: a
// heal that finds nothing to heal.
func alreadyRunning(err error) bool {
	return err != nil && strings.Contains(err.Error(), "is already running")
}

// topology reads the topology `up` recorded in the data directory and
// returns the game day's workload in it.
func (e *Env) topology() (*lifeline.Topology, *lifeline.Workload, error) {
	t, err := local.LoadTopology(e.DataDir)
	if err != nil {
		return nil, nil, err
	}
	for i := range t.Workloads {
		if w := &t.Workloads[i]; w.Name == e.Workload || (e.Workload == "" && len(t.Workloads) == 1) {
			return t, w, nil
		}
	}
	return nil, nil, fmt.Errorf("no workload %q in %s", e.Workload, t.Name)
}

// writerDSN is a connection string for the workload's writer endpoint.
func (e *Env) writerDSN(ctx context.Context) (string, error) {
	st, err := e.Status(ctx)
	if err != nil {
		return "", err
	}
	return e.pgDSN(st.Writer)
}

// pgDSN is a connection string for host:port as the workload's superuser,
// as the operator: over TLS with the operator's certificate of the data
// directory, the server checked against the topology's authority, when the
// topology has one (plain for `up --insecure`). Its search path starts with
// the services' schema (their role's), where the app's tables are.
func (e *Env) pgDSN(addr string) (string, error) { return e.dsn(addr, true) }

// sideDSN is pgDSN for a side instance (lifeline restore --start), which
// listens on 127.0.0.1 without TLS.
func (e *Env) sideDSN(addr string) (string, error) { return e.dsn(addr, false) }

func (e *Env) dsn(addr string, tls bool) (string, error) {
	_, w, err := e.topology()
	if err != nil {
		return "", err
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", addr, err)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", addr, err)
	}
	c := postgres.Client{User: w.Database.Superuser}
	if dir := certs.Dir(e.DataDir); tls && certs.HasAuthority(dir) {
		f, err := certs.Find(dir, certs.Operator)
		if err != nil {
			return "", err
		}
		c.TLS = &postgres.TLSFiles{CA: f.CA, Cert: f.Cert, Key: f.Key}
	}
	return c.Conninfo(host, p, "", "postgres") + " options='-c search_path=" + w.AppRole() + ",public'", nil
}
