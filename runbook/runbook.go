// Package runbook runs recoveries as ordered lists of idempotent steps whose
// progress lives in the control store, so that any controller can resume a
// runbook where the last one stopped.
//
// Guarantees: one runbook per workload at a time (a lock key in etcd); every
// write of progress is guarded by the writer's controller leadership, so a
// deposed leader cannot move a runbook on; every step's outcome is appended
// to the audit log. A step is skipped when its check says its effect is
// already in place, which is what makes resuming after a crash safe.
package runbook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/store"
)

// State of a runbook or of one of its steps.
type State string

const (
	Pending   State = "pending"
	Running   State = "running"
	Succeeded State = "succeeded"
	Skipped   State = "skipped" // the check found the effect already in place
	Failed    State = "failed"
)

// Runbook is the persisted progress of one recovery.
type Runbook struct {
	ID       string            `json:"id"`
	Workload string            `json:"workload"`
	Kind     string            `json:"kind"`
	State    State             `json:"state"`
	Params   map[string]string `json:"params"`
	Steps    []Step            `json:"steps"`
	Created  time.Time         `json:"created"`
	Updated  time.Time         `json:"updated"`
	Finished time.Time         `json:"finished,omitzero"`
	Error    string            `json:"error,omitempty"`
	// Leader is the controller that last moved the runbook on; StartedBy
	// who asked for it.
	Leader    string `json:"leader"`
	StartedBy string `json:"started_by,omitempty"`
	// Evidence is what a region failover was decided on.
	Evidence *lifeline.Evidence `json:"evidence,omitempty"`
	// Approval is the decision taken at the approval gate.
	Approval *lifeline.Approval `json:"approval,omitempty"`
}

// Step is one step's progress.
type Step struct {
	Name     string    `json:"name"`
	State    State     `json:"state"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Seconds  float64   `json:"seconds"`
	Attempts int       `json:"attempts,omitempty"`
	Note     string    `json:"note,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Seconds is the runbook's duration so far.
func (rb *Runbook) Seconds() float64 {
	end := rb.Finished
	if end.IsZero() {
		end = rb.Updated
	}
	return end.Sub(rb.Created).Seconds()
}

// Action is one kind of step. Its methods must be safe to call again after
// a crash at any point: Check tells whether the effect is in place. A step
// that writes to the control store puts Guard(ctx) in its transaction, so
// that a controller that lost its leadership changes nothing.
type Action interface {
	Name() string
	// Pre must hold before Do runs; an error fails the runbook.
	Pre(ctx context.Context, rb *Runbook) error
	// Do performs the step. It may record results in rb.Params; a note
	// returned is shown with the step.
	Do(ctx context.Context, rb *Runbook) (note string, err error)
	// Check reports whether the step's effect is in place.
	Check(ctx context.Context, rb *Runbook) (bool, error)
}

// Kind is a named recipe: the steps of e.g. a zone failover.
type Kind struct {
	Name string
	// Phase is the workload's phase while the runbook runs.
	Phase lifeline.Phase
	Steps []Action
}

// ErrLocked is returned when the workload already runs a runbook.
var ErrLocked = errors.New("another runbook holds the workload's lock")

// ErrNotLeader is returned when progress could not be written because the
// writer is no longer the controller leader.
var ErrNotLeader = store.ErrNotLeader

// Steps lists the step names of a kind, for --plan.
func (k Kind) StepNames() []string {
	out := make([]string, len(k.Steps))
	for i, a := range k.Steps {
		out[i] = a.Name()
	}
	return out
}

// Catalog resolves a runbook kind for a workload: the steps of a kind
// depend on the workload's strategy.
type Catalog interface {
	Kind(workload, kind string) (Kind, error)
}

// Engine starts, runs and resumes runbooks.
type Engine struct {
	store   *store.Store
	catalog Catalog
	log     *slog.Logger
	// Leader names this controller; Guard is true in etcd only while it
	// leads (its election key's revision).
	Leader string
	Guard  clientv3.Cmp
	Now    func() time.Time

	pending sync.WaitGroup // audit writes in flight
}

// NewEngine returns an engine for the kinds of a catalog.
func NewEngine(s *store.Store, leader string, guard clientv3.Cmp, log *slog.Logger, catalog Catalog) *Engine {
	return &Engine{store: s, catalog: catalog, log: log.With("subsystem", "runbook"), Leader: leader, Guard: guard, Now: time.Now}
}

// Request is what a runbook is started with.
type Request struct {
	Workload string
	Kind     string
	Params   map[string]string
	Evidence *lifeline.Evidence
	// Actor is who asked (an operator's name, or the controller).
	Actor  string
	Reason string
}

// Start creates a runbook and takes the workload's lock, while this
// controller leads. It fails with ErrLocked while another runbook runs
// for the workload.
func (e *Engine) Start(ctx context.Context, req Request) (*Runbook, error) {
	if req.Actor == "" {
		req.Actor = e.Leader
	}
	rb, err := Begin(ctx, e.store, e.catalog, req, e.Now(), e.Leader, e.Guard)
	if err != nil {
		return nil, err
	}
	e.log.Info("runbook started", "id", rb.ID, "params", rb.Params)
	return rb, nil
}

// Begin creates a runbook and takes the workload's lock (its state's
// runbook) in one compare-and-swap, with the audit entry that says who
// asked; guard, when given, must hold (a controller's leadership). An
// operator's command begins a runbook without a guard: the controller
// leader runs every runbook it finds in a workload's state.
func Begin(ctx context.Context, s *store.Store, catalog Catalog, req Request, now time.Time, leader string, guard ...clientv3.Cmp) (*Runbook, error) {
	k, err := catalog.Kind(req.Workload, req.Kind)
	if err != nil {
		return nil, err
	}
	now = now.UTC()
	rb := &Runbook{
		ID:       strings.ReplaceAll(fmt.Sprintf("%s-%s-%s", now.Format("20060102T150405.000"), req.Workload, req.Kind), ".", ""),
		Workload: req.Workload, Kind: req.Kind, State: Running, Params: req.Params, Evidence: req.Evidence,
		Created: now, Updated: now, Leader: leader, StartedBy: req.Actor,
	}
	if rb.Params == nil {
		rb.Params = map[string]string{}
	}
	for _, a := range k.Steps {
		rb.Steps = append(rb.Steps, Step{Name: a.Name(), State: Pending})
	}
	b, err := encode(rb)
	if err != nil {
		return nil, err
	}
	phase := k.Phase
	if phase == "" {
		phase = lifeline.PhaseFailingOver
	}
	_, err = s.UpdateState(ctx, req.Workload, func(st *lifeline.WorkloadState, c *store.Change) error {
		if st.Runbook != "" {
			return fmt.Errorf("%w: %s (%s) is running; see lifeline runbooks", ErrLocked, st.Runbook, st.Phase)
		}
		st.Runbook, st.RunbookKind, st.Phase, st.Approval = rb.ID, req.Kind, phase, nil
		c.Guard = guard
		c.Runbook = &store.RunbookWrite{ID: rb.ID, JSON: b}
		c.Audit = []lifeline.AuditEntry{{Time: now, Runbook: rb.ID, Workload: req.Workload, Kind: req.Kind,
			Result: "started", Detail: req.Reason, Actor: req.Actor}}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("start runbook %s for %s: %w", req.Kind, req.Workload, err)
	}
	return rb, nil
}

// Run executes the runbook's remaining steps in order. A step whose check
// passes is skipped; a failed precondition, step or check fails the
// runbook and releases the lock. It returns ErrNotLeader, leaving the
// runbook as it is for the next leader, when leadership is lost.
func (e *Engine) Run(ctx context.Context, rb *Runbook) error {
	if rb.State != Running {
		// Ended, but the workload's state still names it (written by a
		// version that ended runbooks in two writes): release it.
		var err error
		if rb.Error != "" {
			err = errors.New(rb.Error)
		}
		return e.finish(ctx, rb, nil, err)
	}
	k, err := e.catalog.Kind(rb.Workload, rb.Kind)
	if err != nil {
		return e.finish(ctx, rb, nil, fmt.Errorf("runbook %s: %w", rb.ID, err))
	}
	if len(k.Steps) != len(rb.Steps) {
		return e.finish(ctx, rb, nil, fmt.Errorf("runbook %s has %d steps, kind %s has %d", rb.ID, len(rb.Steps), rb.Kind, len(k.Steps)))
	}
	p := &progress{e: e, id: rb.ID}
	p.idle = sync.NewCond(&p.mu)
	for i, a := range k.Steps {
		st := &rb.Steps[i]
		if st.State == Succeeded || st.State == Skipped {
			continue
		}
		if err := p.failed(); err != nil {
			return err
		}
		if err := e.step(ctx, rb, st, a, p); err != nil {
			if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
				return err
			}
			return e.finish(ctx, rb, p, fmt.Errorf("step %s: %w", st.Name, err))
		}
	}
	return e.finish(ctx, rb, p, nil)
}

// progress writes a runbook's progress in the background, newest snapshot
// last, so that recording a step never delays the next one: every write to
// etcd crosses regions and a failover's steps are on the RTO's path.
// Progress is for operators; correctness does not depend on it, because a
// resumed runbook re-runs unfinished steps from their Check. The writes
// that matter (the lock, each step's own effects, the end) are synchronous.
type progress struct {
	e  *Engine
	id string

	mu   sync.Mutex
	idle *sync.Cond
	next string
	busy bool
	err  error
}

func (p *progress) put(rb *Runbook) {
	b, err := encode(p.e.touch(rb))
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next = b
	if !p.busy {
		p.busy = true
		go p.write()
	}
}

func (p *progress) write() {
	for {
		p.mu.Lock()
		b := p.next
		p.next = ""
		if b == "" {
			p.busy = false
			p.idle.Broadcast()
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.e.saveBytes(ctx, p.id, b)
		cancel()
		if err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
		}
	}
}

// failed reports a write that failed (ErrNotLeader after losing leadership).
func (p *progress) failed() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// flush waits until every snapshot is written.
func (p *progress) flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.busy {
		p.idle.Wait()
	}
	return p.err
}

type guardKey struct{}

// Guard returns the comparison that holds only while the engine running the
// step leads; steps add it to their transactions.
func Guard(ctx context.Context) (clientv3.Cmp, bool) {
	g, ok := ctx.Value(guardKey{}).(clientv3.Cmp)
	return g, ok
}

func (e *Engine) step(ctx context.Context, rb *Runbook, st *Step, a Action, p *progress) error {
	ctx = context.WithValue(ctx, guardKey{}, e.Guard)
	if st.State == Pending || st.Started.IsZero() {
		st.Started = e.Now().UTC()
	}
	st.Attempts++
	st.Error = ""
	// A step that takes a while shows as running meanwhile.
	running := e.showRunning(rb, st, p)
	defer running.stop()
	done, err := a.Check(ctx, rb)
	if err != nil {
		return e.failStep(ctx, rb, st, p, running, fmt.Errorf("check: %w", err))
	}
	if done {
		// Resumed after the effect was already in place (or it never had to happen).
		return e.endStep(ctx, rb, st, p, running, Skipped, "already in place")
	}
	if err := a.Pre(ctx, rb); err != nil {
		return e.failStep(ctx, rb, st, p, running, fmt.Errorf("precondition: %w", err))
	}
	note, err := a.Do(ctx, rb)
	if err != nil {
		return e.failStep(ctx, rb, st, p, running, err)
	}
	done, err = a.Check(ctx, rb)
	if err != nil {
		return e.failStep(ctx, rb, st, p, running, fmt.Errorf("check: %w", err))
	}
	if !done {
		return e.failStep(ctx, rb, st, p, running, errors.New("check: the step ran but its effect is not in place"))
	}
	return e.endStep(ctx, rb, st, p, running, Succeeded, note)
}

// ShowRunningAfter is how long a step runs before it is shown as running.
const ShowRunningAfter = 300 * time.Millisecond

// runningMark writes a snapshot of the runbook with the step running, once,
// if the step is still going after ShowRunningAfter. stop waits for that
// write, so the step's final write always comes after it.
type runningMark struct {
	mu    sync.Mutex
	timer *time.Timer
	ended bool
}

func (e *Engine) showRunning(rb *Runbook, st *Step, p *progress) *runningMark {
	m := &runningMark{}
	snap := *rb
	snap.Steps = append([]Step(nil), rb.Steps...)
	snap.Params = map[string]string{}
	for k, v := range rb.Params {
		snap.Params[k] = v
	}
	for i := range snap.Steps {
		if snap.Steps[i].Name == st.Name {
			snap.Steps[i] = *st
			snap.Steps[i].State = Running
		}
	}
	m.timer = time.AfterFunc(ShowRunningAfter, func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.ended {
			p.put(&snap)
		}
	})
	return m
}

func (m *runningMark) stop() {
	m.timer.Stop()
	m.mu.Lock()
	m.ended = true
	m.mu.Unlock()
}

func (e *Engine) endStep(ctx context.Context, rb *Runbook, st *Step, p *progress, running *runningMark, state State, note string) error {
	running.stop()
	st.State, st.Note = state, note
	st.Finished = e.Now().UTC()
	st.Seconds = st.Finished.Sub(st.Started).Seconds()
	p.put(rb)
	e.audit(ctx, rb, st.Name, string(state), st.Seconds, note)
	e.log.Info("runbook step", "id", rb.ID, "step", st.Name, "state", state, "seconds", st.Seconds, "note", note)
	return nil
}

func (e *Engine) failStep(ctx context.Context, rb *Runbook, st *Step, p *progress, running *runningMark, err error) error {
	running.stop()
	if errors.Is(err, ErrNotLeader) || ctx.Err() != nil {
		return err
	}
	st.State, st.Error = Failed, err.Error()
	st.Finished = e.Now().UTC()
	st.Seconds = st.Finished.Sub(st.Started).Seconds()
	p.put(rb)
	e.audit(ctx, rb, st.Name, string(Failed), st.Seconds, err.Error())
	return err
}

// finish records the outcome and releases the workload's lock.
func (e *Engine) finish(ctx context.Context, rb *Runbook, p *progress, err error) error {
	if p != nil {
		if ferr := p.flush(); errors.Is(ferr, ErrNotLeader) {
			return ferr
		}
	}
	rb.State = Succeeded
	if err != nil {
		rb.State, rb.Error = Failed, err.Error()
	}
	rb.Finished = e.Now().UTC()
	b, encErr := encode(e.touch(rb))
	if encErr != nil {
		return encErr
	}
	_, terr := e.store.UpdateState(ctx, rb.Workload, func(st *lifeline.WorkloadState, c *store.Change) error {
		c.Guard = []clientv3.Cmp{e.Guard}
		c.Runbook = &store.RunbookWrite{ID: rb.ID, JSON: b}
		if st.Runbook == rb.ID {
			st.Runbook, st.RunbookKind, st.Phase, st.Approval = "", "", lifeline.PhaseSteady, nil
			st.Demote, st.Demoted, st.Restore = "", nil, nil
		}
		return nil
	})
	if terr != nil {
		return fmt.Errorf("finish runbook %s: %w", rb.ID, terr)
	}
	e.audit(ctx, rb, "", string(rb.State), rb.Seconds(), rb.Error)
	e.log.Info("runbook finished", "id", rb.ID, "state", rb.State, "seconds", rb.Seconds(), "err", rb.Error)
	return err
}

func (e *Engine) touch(rb *Runbook) *Runbook {
	rb.Updated = e.Now().UTC()
	rb.Leader = e.Leader
	return rb
}

// saveBytes writes progress, only while this controller leads.
func (e *Engine) saveBytes(ctx context.Context, id, b string) error {
	err := e.store.SaveRunbook(ctx, store.RunbookWrite{ID: id, JSON: b}, e.Guard)
	if errors.Is(err, store.ErrNotLeader) {
		return fmt.Errorf("save runbook %s: %w", id, ErrNotLeader)
	}
	return err
}

// Unfinished returns the runbooks a new leader must resume.
func (e *Engine) Unfinished(ctx context.Context) ([]*Runbook, error) {
	all, err := List(ctx, e.store)
	if err != nil {
		return nil, err
	}
	var out []*Runbook
	for i := range all {
		if all[i].State == Running {
			out = append(out, &all[i])
		}
	}
	return out, nil
}

// Get reads one runbook.
func Get(ctx context.Context, s *store.Store, id string) (*Runbook, error) {
	var rb Runbook
	_, found, err := s.Get(ctx, s.Keys().Runbook(id), &rb)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("runbook %s: not found", id)
	}
	return &rb, nil
}

// List reads every runbook, oldest first.
func List(ctx context.Context, s *store.Store) ([]Runbook, error) {
	m, err := store.List[Runbook](ctx, s, s.Keys().RunbookPrefix())
	if err != nil {
		return nil, err
	}
	out := make([]Runbook, 0, len(m))
	for _, rb := range m {
		out = append(out, rb)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}
