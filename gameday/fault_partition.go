package gameday

import (
	"context"
	"fmt"
)

// partition cuts emulated links with `lifeline link cut`: between two
// parties (regions apart: between: [eu-west, eu-central]) or one party
// from everything (a zone from the rest: isolate: eu-west/a; the witness:
// isolate: witness). Parties may be primary (the primary's node) or
// active (its region). Bytes stop flowing; nothing is refused.
type partition struct {
	bound
	a, b string
	// cut is the rule as injected, with aliases resolved.
	cutA, cutB string
}

func init() {
	registerFault("partition", faultType{keys: []string{"between", "isolate"}, make: func(p *params) Fault {
		f := &partition{}
		switch {
		case p.Has("between") && p.Has("isolate"):
			p.Errorf("isolate", "partition: give between or isolate, not both")
		case p.Has("between"):
			f.a, f.b, _ = p.Pair("between")
			p.checkPartyRef("between", f.a)
			p.checkPartyRef("between", f.b)
		case p.Has("isolate"):
			f.a = p.Required("isolate", "partition")
			p.checkPartyRef("isolate", f.a)
		default:
			p.Errorf("", "partition: give between: [A, B] (cut A from B) or isolate: A (cut A from everything)")
		}
		return f
	}})
}

func (f *partition) Name() string { return "partition" }

func (f *partition) Describe() string {
	if f.cutB == "" {
		return "isolate " + f.cutA
	}
	return f.cutA + " <-> " + f.cutB
}

func (f *partition) prepare(ctx context.Context) error {
	a, err := f.env.party(ctx, f.a)
	if err != nil {
		return fmt.Errorf("partition: %w", err)
	}
	var b string
	if f.b != "" {
		if b, err = f.env.party(ctx, f.b); err != nil {
			return fmt.Errorf("partition: %w", err)
		}
	}
	f.cutA, f.cutB = a, b
	return nil
}

func (f *partition) Inject(ctx context.Context) error {
	if f.cutA == "" {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	args := []string{"link", "cut", f.cutA}
	if f.cutB != "" {
		args = append(args, f.cutB)
	}
	if _, err := f.env.CLI.Lifeline(ctx, args...); err != nil {
		return fmt.Errorf("partition %s: %w", f.Describe(), err)
	}
	return nil
}

func (f *partition) Heal(ctx context.Context) error {
	if f.cutA == "" {
		return nil
	}
	args := []string{"link", "heal", f.cutA}
	if f.cutB != "" {
		args = append(args, f.cutB)
	}
	if _, err := f.env.CLI.Lifeline(ctx, args...); err != nil {
		return fmt.Errorf("heal partition %s: %w", f.Describe(), err)
	}
	return nil
}
