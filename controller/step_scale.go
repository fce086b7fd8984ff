package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/lifeline-dr/lifeline/compute"
	"github.com/lifeline-dr/lifeline/runbook"
)

func init() { register("scale", func(e *Env) runbook.Action { return &scale{base{e, "scale"}} }) }

// scale waits until the active region runs its active count of service
// instances and each answers its health check. The agents start them: the
// placement (compute.Plan) follows the state's active region, which the
// promotion moved. Pilot light goes from 0 instances, warm standby from
// its standby count; active-active already runs them all.
type scale struct{ base }

func (s *scale) Check(_ context.Context, rb *runbook.Runbook) (bool, error) {
	return has(rb, "scaled"), nil
}

func (s *scale) Do(ctx context.Context, rb *runbook.Runbook) (string, error) {
	w, st, err := s.current(ctx, rb)
	if err != nil {
		return "", err
	}
	var want []compute.Instance
	for _, inst := range compute.Plan(s.T, w, st.Active) {
		if inst.Node.Region == st.Active {
			want = append(want, inst)
		}
	}
	before := 0
	if from := rb.Params["from_region"]; from != "" && from != st.Active {
		for _, inst := range compute.Plan(s.T, w, from) {
			if inst.Node.Region == st.Active {
				before++
			}
		}
	} else {
		before = len(want)
	}
	if len(want) == 0 {
		rb.Params["scaled"] = "true"
		return "no service instances in " + st.Active, nil
	}
	start := s.Now()
	healthy := map[string]bool{}
	var skipped []string
	_, err = s.until(ctx, waitFor(w, time.Minute), s.T.Control.CheckInterval/2, func() (bool, string, error) {
		// A node that is down runs none of its instances: they are not
		// waited for (its agent starts them when it returns).
		reports, err := s.reports(ctx, w.Name)
		if err != nil {
			return false, "", err
		}
		var down []string
		skipped = nil
		for _, inst := range want {
			if healthy[inst.Name()] {
				continue
			}
			if r, ok := reports[inst.Node.String()]; st.HasDatabase(inst.Node.Region) && (!ok || !fresh(s.T, r, s.Now())) {
				skipped = append(skipped, inst.Name())
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			err := s.ProbeInstance(pctx, inst)
			cancel()
			if err == nil {
				healthy[inst.Name()] = true
				continue
			}
			down = append(down, fmt.Sprintf("%s (%v)", inst.Name(), err))
		}
		return len(down) == 0, "not healthy: " + strings.Join(down, ", "), nil
	})
	if err != nil {
		return "", err
	}
	rb.Params["scaled"] = "true"
	note := fmt.Sprintf("%s: %d → %d instances, healthy after %s", st.Active, before, len(want), s.Now().Sub(start).Round(time.Millisecond))
	if len(skipped) > 0 {
		note += fmt.Sprintf("; not waited for, their node is down: %s", strings.Join(skipped, ", "))
	}
	return note, nil
}
