package gameday

import (
	"context"
	"fmt"
	"time"
)

// latency adds delay to the emulated links between two parties with
// `lifeline link latency A B +50ms` (each way, on top of the spec's
// cross-region latency); its heal sets the extra back to 0.
type latency struct {
	bound
	a, b       string
	add        time.Duration
	setA, setB string
}

func init() {
	registerFault("latency", faultType{keys: []string{"between", "add"}, make: func(p *params) Fault {
		f := &latency{}
		if !p.Has("between") {
			p.Errorf("", "latency: between: [A, B] is required")
		} else {
			f.a, f.b, _ = p.Pair("between")
			p.checkPartyRef("between", f.a)
			p.checkPartyRef("between", f.b)
		}
		if !p.Has("add") {
			p.Errorf("", "latency: add is required (extra delay each way, e.g. add: 50ms)")
		} else if f.add = p.Duration("add", 0); f.add <= 0 && p.Has("add") {
			p.Errorf("add", "latency: add must be above 0")
		}
		return f
	}})
}

func (f *latency) Name() string { return "latency" }

func (f *latency) Describe() string {
	return fmt.Sprintf("%s <-> %s +%s", f.setA, f.setB, f.add)
}

func (f *latency) prepare(ctx context.Context) error {
	a, err := f.env.party(ctx, f.a)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	b, err := f.env.party(ctx, f.b)
	if err != nil {
		return fmt.Errorf("latency: %w", err)
	}
	f.setA, f.setB = a, b
	return nil
}

func (f *latency) Inject(ctx context.Context) error {
	if f.setA == "" {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	if _, err := f.env.CLI.Lifeline(ctx, "link", "latency", f.setA, f.setB, "+"+f.add.String()); err != nil {
		return fmt.Errorf("latency %s: %w", f.Describe(), err)
	}
	return nil
}

func (f *latency) Heal(ctx context.Context) error {
	if f.setA == "" {
		return nil
	}
	if _, err := f.env.CLI.Lifeline(ctx, "link", "latency", f.setA, f.setB, "0"); err != nil {
		return fmt.Errorf("heal latency %s: %w", f.Describe(), err)
	}
	return nil
}
