package gameday

import (
	"context"
	"fmt"
)

// killRegion loses every node of a region at the same instant: `lifeline
// node kill REGION` sends SIGKILL to all of their process groups in one
// go, not one node after the other. target is a region or active (the
// primary's region when it runs).
type killRegion struct {
	bound
	target string
	hit    string
}

func init() {
	registerFault("kill-region", faultType{keys: []string{"target"}, make: func(p *params) Fault {
		f := &killRegion{target: p.String("target", "active")}
		if f.target != "active" && !nameRe.MatchString(f.target) {
			p.Errorf("target", "target %q: want a region or active", f.target)
		}
		return f
	}})
}

func (f *killRegion) Name() string     { return "kill-region" }
func (f *killRegion) Describe() string { return f.hit }

func (f *killRegion) prepare(ctx context.Context) error {
	region, err := f.env.region(ctx, f.target)
	if err != nil {
		return fmt.Errorf("kill-region: %w", err)
	}
	f.hit = region
	return nil
}

func (f *killRegion) Inject(ctx context.Context) error {
	if f.hit == "" {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	if _, err := f.env.CLI.Lifeline(ctx, "node", "kill", f.hit); err != nil {
		return fmt.Errorf("kill-region %s: %w", f.hit, err)
	}
	return nil
}

func (f *killRegion) Heal(ctx context.Context) error {
	if f.hit == "" {
		return nil
	}
	// Starting a region starts the nodes of it that are not running.
	if _, err := f.env.CLI.Lifeline(ctx, "node", "start", f.hit); err != nil && !alreadyRunning(err) {
		return fmt.Errorf("heal kill-region %s: %w", f.hit, err)
	}
	return nil
}
