package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline/runbook"
)

func init() { register("reroute", func(e *Env) runbook.Action { return &reroute{base{e, "reroute"}} }) }

// reroute makes routing match the state: every region that is not fenced
// switched on, the fenced ones off (the writer endpoint follows the
// primary lease by itself), then waits until the workload's public entry
// point answers (bounded; a note says when it did not).
type reroute struct{ base }

func (s *reroute) Check(_ context.Context, rb *runbook.Runbook) (bool, error) {
	return has(rb, "rerouted"), nil
}

func (s *reroute) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, st, err := s.current(ctx, rb)
	if err != nil {
		return "", err
	}
	var notes []string
	if s.Routing != nil {
		// The active region first: a region is never switched off while
		// it would leave none on.
		order := append([]string{st.Active}, s.T.RegionNames()...)
		done := map[string]bool{}
		for _, r := range order {
			if done[r] {
				continue
			}
			done[r] = true
			want := !st.IsFenced(r)
			on, err := s.Routing.RegionOn(ctx, w.Name, r)
			if err != nil {
				return "", err
			}
			if on == want {
				continue
			}
			if err := s.Routing.SetRegion(ctx, w.Name, r, want, rb.ID, rb.Kind+": routing follows the state"); err != nil {
				return "", err
			}
			notes = append(notes, fmt.Sprintf("%s %s", r, map[bool]string{true: "on", false: "off"}[want]))
		}
	}
	if s.ProbeEntry != nil && w.Routing.Hostname != "" {
		start := s.Now()
		note, err := s.until(ctx, waitFor(w, 30*time.Second), s.T.Control.CheckInterval/2, func() (bool, string, error) {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if err := s.ProbeEntry(pctx, w); err != nil {
				return false, err.Error(), nil
			}
			return true, "", nil
		})
		if err != nil {
			notes = append(notes, "the public entry point does not answer yet: "+note)
		} else {
			notes = append(notes, fmt.Sprintf("the public entry point answers (%s)", s.Now().Sub(start).Round(time.Millisecond)))
		}
	}
	rb.Params["rerouted"] = "true"
	if len(notes) == 0 {
		return "routing already follows the state", nil
	}
	return strings.Join(notes, "; "), nil
}
