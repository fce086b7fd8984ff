package gameday

import (
	"context"
	"fmt"
)

// killZone loses one node at once: `lifeline node kill REGION/ZONE` sends
// SIGKILL to its agent, etcd member, PostgreSQL and service instances.
// target is REGION/ZONE or primary (the primary's node when it runs).
type killZone struct {
	bound
	target string
	hit    string
}

func init() {
	registerFault("kill-zone", faultType{keys: []string{"target"}, make: func(p *params) Fault {
		f := &killZone{target: p.String("target", "primary")}
		p.checkNodeRef("target", f.target, "primary")
		return f
	}})
}

func (f *killZone) Name() string     { return "kill-zone" }
func (f *killZone) Describe() string { return f.hit }

func (f *killZone) prepare(ctx context.Context) error {
	node, err := f.env.node(ctx, f.target)
	if err != nil {
		return fmt.Errorf("kill-zone: %w", err)
	}
	f.hit = node
	return nil
}

func (f *killZone) Inject(ctx context.Context) error {
	if f.hit == "" {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	if _, err := f.env.CLI.Lifeline(ctx, "node", "kill", f.hit); err != nil {
		return fmt.Errorf("kill-zone %s: %w", f.hit, err)
	}
	return nil
}

func (f *killZone) Heal(ctx context.Context) error {
	if f.hit == "" {
		return nil
	}
	if _, err := f.env.CLI.Lifeline(ctx, "node", "start", f.hit); err != nil && !alreadyRunning(err) {
		return fmt.Errorf("heal kill-zone %s: %w", f.hit, err)
	}
	return nil
}
