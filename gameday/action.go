package gameday

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/lifeline-dr/lifeline/runbook"
)

// The operator's actions are the public commands, run as a person would
// type them. A command this lifeline does not have fails the action with
// the command's own message.
//
//	approve     lifeline approve RUNBOOK           (runbook: ID, default the newest of the run with an approval step; nothing to do when the witness quorum approved it)
//	switchover  lifeline switchover --workload W --to REGION
//	failback    lifeline failback --workload W
//	restore     lifeline restore --to-time T --into DIR --start, then the rows copied back (action_restore.go)

// cliAction is an action that is one lifeline command.
type cliAction struct {
	bound
	name string
	args func(ctx context.Context, e *Env) ([]string, error)
	ran  []string
}

func (a *cliAction) Name() string { return a.name }

func (a *cliAction) Describe() string { return fmt.Sprint(a.ran) }

func (a *cliAction) Run(ctx context.Context) error {
	args, err := a.args(ctx, a.env)
	if err != nil {
		return fmt.Errorf("%s: %w", a.name, err)
	}
	a.ran = append([]string{"lifeline"}, args...)
	out, err := a.env.CLI.Lifeline(ctx, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", a.name, err)
	}
	a.env.logf("%s: %s", a.name, out)
	return nil
}

func init() {
	registerAction("approve", actionType{keys: []string{"runbook"}, make: func(p *params) Action {
		return &approve{id: p.String("runbook", "pending")}
	}})
	registerAction("switchover", actionType{keys: []string{"to", "workload"}, make: func(p *params) Action {
		to, workload := p.Required("to", "switchover"), p.String("workload", "")
		if to != "" && !nameRe.MatchString(to) {
			p.Errorf("to", "switchover: to %q: want a region", to)
		}
		return &cliAction{name: "switchover", args: func(_ context.Context, e *Env) ([]string, error) {
			return []string{"switchover", "--workload", e.workloadName(workload), "--to", to}, nil
		}}
	}})
	registerAction("failback", actionType{keys: []string{"workload"}, make: func(p *params) Action {
		workload := p.String("workload", "")
		return &cliAction{name: "failback", args: func(_ context.Context, e *Env) ([]string, error) {
			return []string{"failback", "--workload", e.workloadName(workload)}, nil
		}}
	}})
}

func (e *Env) workloadName(given string) string {
	if given != "" {
		return given
	}
	return e.Workload
}

// approve approves a region failover as `lifeline approve RUNBOOK` does.
// With the default runbook ("pending") it takes the newest runbook of this
// run that has an approval step; when the witness quorum approved it
// already (failover: auto), there is nothing left to approve and the action
// says so instead of failing.
type approve struct {
	bound
	id   string
	ran  []string
	note string
}

func (a *approve) Name() string { return "approve" }

func (a *approve) Describe() string {
	if a.note != "" {
		return a.note
	}
	return fmt.Sprint(a.ran)
}

func (a *approve) Run(ctx context.Context) error {
	id := a.id
	if id == "pending" {
		rb, err := a.env.approvalRunbook(ctx, time.Minute)
		if err != nil {
			return fmt.Errorf("approve: %w", err)
		}
		if a.approvedAlready(rb) {
			return nil
		}
		id = rb.ID
	}
	a.ran = []string{"lifeline", "approve", id}
	out, err := a.env.CLI.Lifeline(ctx, "approve", id)
	if err != nil {
		// The quorum may have approved it between the look and the command.
		if rbs, rerr := a.env.Runbooks(ctx); rerr == nil {
			for _, rb := range rbs {
				if rb.ID == id && a.approvedAlready(rb) {
					return nil
				}
			}
		}
		return fmt.Errorf("approve: %w", err)
	}
	a.env.logf("approve: %s", out)
	return nil
}

// approvedAlready reports whether rb's approval step has ended, and then
// says who approved it as the action's outcome.
func (a *approve) approvedAlready(rb Runbook) bool {
	st, ok := approvalStep(rb)
	if !ok || (st.State != runbook.Succeeded && st.State != runbook.Skipped) {
		return false
	}
	by := st.Note
	if by == "" {
		by = "no note"
	}
	a.note = fmt.Sprintf("nothing to approve: %s was approved already (%s)", rb.ID, by)
	a.env.logf("approve: %s", a.note)
	return true
}

// approvalStep is rb's await-approval step, when it has one.
func approvalStep(rb Runbook) (RunbookStep, bool) {
	for _, st := range rb.Steps {
		if st.Name == "await-approval" {
			return st, true
		}
	}
	return RunbookStep{}, false
}

// approvalRunbook waits for the newest runbook of this run (started after
// MarkStart, or any with no mark) that has an approval step.
func (e *Env) approvalRunbook(ctx context.Context, wait time.Duration) (Runbook, error) {
	since, _ := e.MarkOf(MarkStart)
	deadline := time.Now().Add(wait)
	for {
		rbs, err := e.Runbooks(ctx)
		if err == nil {
			for i := len(rbs) - 1; i >= 0 && !rbs[i].Started.Before(since); i-- {
				if _, ok := approvalStep(rbs[i]); ok {
					return rbs[i], nil
				}
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return Runbook{}, err
			}
			return Runbook{}, fmt.Errorf("no runbook with an approval step started in %s", wait)
		}
		select {
		case <-ctx.Done():
			return Runbook{}, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// Runbook is a runbook as `lifeline runbooks --json` shows it.
type Runbook struct {
	ID       string        `json:"id"`
	Workload string        `json:"workload"`
	Kind     string        `json:"kind"`
	State    string        `json:"state"`
	Started  time.Time     `json:"started"`
	Seconds  float64       `json:"seconds"`
	Leader   string        `json:"leader,omitempty"`
	Error    string        `json:"error,omitempty"`
	Steps    []RunbookStep `json:"steps"`
}

// RunbookStep is one step of a runbook with its timing, as the runbook
// package records it.
type RunbookStep = runbook.Step

// Runbooks lists the topology's runbooks.
func (e *Env) Runbooks(ctx context.Context) ([]Runbook, error) {
	out, err := e.CLI.Lifeline(ctx, "runbooks", "--json")
	if err != nil {
		return nil, err
	}
	var rbs []Runbook
	if err := json.Unmarshal([]byte(out), &rbs); err != nil {
		return nil, fmt.Errorf("runbooks --json: %w", err)
	}
	return rbs, nil
}
