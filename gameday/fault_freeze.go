package gameday

import (
	"context"
	"fmt"
	"time"
)

// freeze stops a node's processes (agent, etcd member, PostgreSQL) with
// SIGSTOP for the entry's `for`, through `lifeline node freeze R/Z --for D`:
// `up` itself sends SIGCONT when D is over, so a node is never left frozen
// by a game day that died. Its heal thaws at once (`lifeline node thaw`).
type freeze struct {
	bound
	target string
	d      time.Duration
	hit    string
}

func init() {
	registerFault("freeze", faultType{keys: []string{"target"}, needsFor: true, make: func(p *params) Fault {
		f := &freeze{target: p.String("target", "primary"), d: p.Duration("for", 0)}
		p.checkNodeRef("target", f.target, "primary")
		return f
	}})
}

func (f *freeze) Name() string     { return "freeze" }
func (f *freeze) Describe() string { return fmt.Sprintf("%s for %s", f.hit, f.d) }

func (f *freeze) prepare(ctx context.Context) error {
	node, err := f.env.node(ctx, f.target)
	if err != nil {
		return fmt.Errorf("freeze: %w", err)
	}
	f.hit = node
	return nil
}

func (f *freeze) Inject(ctx context.Context) error {
	if f.hit == "" {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	if _, err := f.env.CLI.Lifeline(ctx, "node", "freeze", f.hit, "--for", f.d.String()); err != nil {
		return fmt.Errorf("freeze %s: %w", f.hit, err)
	}
	return nil
}

func (f *freeze) Heal(ctx context.Context) error {
	if f.hit == "" {
		return nil
	}
	if _, err := f.env.CLI.Lifeline(ctx, "node", "thaw", f.hit); err != nil {
		return fmt.Errorf("heal freeze %s: %w", f.hit, err)
	}
	return nil
}
