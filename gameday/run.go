package gameday

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/spec"
	"github.com/lifeline-dr/lifeline/status"
)

// Options configure a game day.
type Options struct {
	// Binary is the lifeline executable the game day drives.
	Binary string
	// Attach, when set, is the data directory of a running topology to
	// use instead of the scenario's spec or attach.
	Attach string
	// DataDir keeps the history of game days (DataDir/gamedays).
	DataDir string
	// Out is where reports go (default DataDir/gamedays/RUN); with several
	// strategies, one folder per strategy inside it.
	Out string
	// Log receives progress lines; Live the live line, rewritten in place
	// when Terminal.
	Log, Live io.Writer
	Terminal  bool
	// Children collects the topologies started, for a second Ctrl-C.
	Children *Children
	// Keep keeps what the run built besides its reports and logs: the
	// databases and backups of a topology it started, restored copies.
	Keep bool
}

// Run runs a scenario under each of its strategies (once when it lists
// none) and returns a report for each run. A run whose expectations did
// not all hold is not an error: its report says so.
func Run(ctx context.Context, sc *Scenario, opts Options) ([]*Report, error) {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	strategies := sc.Strategies
	if len(strategies) == 0 {
		strategies = []lifeline.Strategy{""}
	}
	var reports []*Report
	for _, st := range strategies {
		// Faults remember what they hit: each run parses afresh.
		fresh, err := ParseScenario(sc.File, sc.source)
		if err != nil {
			return reports, err
		}
		out := opts.Out
		if out != "" && len(strategies) > 1 {
			out = filepath.Join(out, string(st))
		}
		rep, err := runOne(ctx, fresh, st, opts, out)
		if rep != nil {
			reports = append(reports, rep)
		}
		if err != nil {
			return reports, err
		}
		if ctx.Err() != nil {
			return reports, ctx.Err()
		}
	}
	return reports, nil
}

// newRunID names a run by its start and a random suffix; its write ids
// start with it, so that a database shared by several runs tells them apart.
func newRunID(now time.Time) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "gd" + now.UTC().Format("20060102t150405") + hex.EncodeToString(b)
}

// scenarioPath resolves a path of the scenario relative to its folder.
func scenarioPath(sc *Scenario, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(sc.File), p)
}

type runner struct {
	sc   *Scenario
	opts Options
	env  *Env
	rep  *Report
	log  io.Writer

	mu      sync.Mutex
	events  []Event
	phase   string
	healed  map[int]bool
	injects map[int]Step
}

func runOne(ctx context.Context, sc *Scenario, strategy lifeline.Strategy, opts Options, out string) (*Report, error) {
	started := time.Now()
	id := newRunID(started)
	if out == "" {
		out = filepath.Join(opts.DataDir, "gamedays", id)
	}
	out, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	rep := &Report{
		Version: ReportVersion, ID: id, Scenario: sc.Name, File: sc.File, Description: sc.Description,
		Strategy: string(strategy), Plan: sc.Plan, Load: sc.Load, Started: started, Dir: out,
	}
	r := &runner{sc: sc, opts: opts, rep: rep, log: opts.Log, healed: map[int]bool{}, injects: map[int]Step{}}
	fmt.Fprintf(r.log, "game day %s (%s)%s: reports in %s\n", sc.Name, id, strategyNote(strategy), out)

	dataDir, stopTopology, err := r.topology(ctx, strategy, out)
	if err != nil {
		os.Remove(out) // only when nothing was written there
		return nil, err
	}
	defer stopTopology()
	rep.Topology.DataDir = dataDir

	// The scratch folder holds restored copies run by the postgres user.
	scratch := filepath.Join(out, "scratch")
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return nil, err
	}
	_ = os.Chmod(out, 0o755)
	r.env = &Env{DataDir: dataDir, Workload: sc.Workload, CLI: CLI{Binary: opts.Binary, DataDir: dataDir}, Binary: opts.Binary, Scratch: scratch,
		Logf: func(format string, args ...any) { fmt.Fprintf(r.log, "  "+format+"\n", args...) }}
	err = r.run(ctx, id)
	if !opts.Keep {
		_ = os.RemoveAll(scratch)
	}
	if err != nil {
		return nil, err
	}
	if err := rep.Write(); err != nil {
		return rep, err
	}
	if err := AppendHistory(opts.DataDir, rep); err != nil {
		return rep, err
	}
	return rep, nil
}

func strategyNote(s lifeline.Strategy) string {
	if s == "" {
		return ""
	}
	return " under " + string(s)
}

// topology starts the scenario's spec, or attaches to a running topology.
func (r *runner) topology(ctx context.Context, strategy lifeline.Strategy, out string) (string, func(), error) {
	sc := r.sc
	attach := r.opts.Attach
	if attach == "" && sc.Attach != "" {
		attach = scenarioPath(sc, sc.Attach)
	}
	if attach != "" {
		if _, err := local.LoadTopology(attach); err != nil {
			if sc.Attach != "" && r.opts.Attach == "" {
				return "", nil, fmt.Errorf("%s:%d: attach: %w", sc.File, sc.AttachLine, err)
			}
			return "", nil, fmt.Errorf("attach: %w", err)
		}
		abs, err := filepath.Abs(attach)
		if err != nil {
			return "", nil, err
		}
		fmt.Fprintf(r.log, "attached to the topology on %s\n", abs)
		return abs, func() {}, nil
	}
	specFile := scenarioPath(sc, strings.ReplaceAll(sc.Spec, "{strategy}", string(strategy)))
	t, err := spec.Load(specFile)
	if err != nil {
		var perr *os.PathError
		if errors.As(err, &perr) {
			return "", nil, fmt.Errorf("%s:%d: spec %s: %w", sc.File, sc.SpecLine, specFile, err)
		}
		return "", nil, err
	}
	w, err := pickWorkload(t, sc.Workload)
	if err != nil {
		return "", nil, fmt.Errorf("%s:%d: spec %s: %w", sc.File, sc.SpecLine, specFile, err)
	}
	if strategy != "" && w.Strategy != strategy {
		return "", nil, fmt.Errorf("%s:%d: spec %s runs %s, not %s", sc.File, sc.SpecLine, specFile, w.Strategy, strategy)
	}
	unlock, err := lockMachine(r.log)
	if err != nil {
		return "", nil, err
	}
	dataDir := filepath.Join(out, "topology")
	fmt.Fprintf(r.log, "starting %s (lifeline up; log in %s)...\n", specFile, filepath.Join(out, "up.log"))
	up, err := startUp(ctx, r.opts.Binary, specFile, dataDir, filepath.Join(out, "up.log"), r.opts.Children)
	if err != nil {
		unlock()
		return "", nil, err
	}
	r.rep.Topology.Started = true
	r.rep.Topology.Spec = specFile
	return dataDir, func() {
		up.stop(r.log)
		unlock()
		if !r.opts.Keep {
			// The databases and backups are hundreds of MB a run; the
			// logs stay beside the report.
			for _, d := range []string{"nodes", "backups"} {
				_ = os.RemoveAll(filepath.Join(dataDir, d))
			}
		}
	}, nil
}

func pickWorkload(t *lifeline.Topology, name string) (*lifeline.Workload, error) {
	for i := range t.Workloads {
		if w := &t.Workloads[i]; w.Name == name || (name == "" && len(t.Workloads) == 1) {
			return w, nil
		}
	}
	if name == "" {
		return nil, fmt.Errorf("%d workloads: name the one to exercise with workload:", len(t.Workloads))
	}
	return nil, fmt.Errorf("no workload %q", name)
}

// run is one game day on a ready topology.
func (r *runner) run(ctx context.Context, id string) error {
	sc, env := r.sc, r.env
	for _, st := range sc.Timeline {
		if b, ok := st.Fault.(binder); ok {
			b.bind(env)
		}
		if b, ok := st.Action.(binder); ok {
			b.bind(env)
		}
	}
	w, err := r.waitReady(ctx)
	if err != nil {
		return err
	}
	if env.Workload == "" {
		env.Workload = w.Name
	}
	r.rep.Workload = w.Name
	r.rep.Topology.Strategy = w.Strategy
	r.rep.Topology.Primary = w.Primary
	if _, tw, err := env.topology(); err == nil {
		r.rep.Objectives = Objectives{RPO: tw.Objectives.RPO, RTO: tw.Objectives.RTO}
	}
	tgt, err := r.target(ctx, w, id)
	if err != nil {
		return err
	}
	defer tgt.close()

	tr := &Traffic{spec: sc.Load, target: tgt, prefix: id, Ledger: &Ledger{}}
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	start := time.Now()
	r.env.Mark(MarkStart, start)
	r.setPhase("steady")
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		tr.Run(loadCtx)
	}()
	tlCtx, stopTimeline := context.WithCancel(ctx)
	defer stopTimeline()
	tlDone := make(chan struct{})
	go func() {
		defer close(tlDone)
		r.timeline(tlCtx, start)
	}()

	aborted := r.watch(ctx, tr, start)
	end := time.Now()
	stopLoad()
	<-loadDone
	r.clearLive()
	switch {
	case aborted != "":
		r.rep.Aborted = aborted
		fmt.Fprintf(r.log, "aborted: %s\n", aborted)
		stopTimeline()
	case ctx.Err() != nil:
		r.rep.Aborted = "interrupted"
		fmt.Fprintln(r.log, "interrupted: healing the faults and stopping")
		stopTimeline()
	default:
		fmt.Fprintln(r.log, "load done; waiting for the timeline to finish")
	}
	<-tlDone

	// Heal what is still broken, also after an abort or Ctrl-C.
	hctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	r.healAll(hctx, start)
	cancel()

	wait := 2 * time.Minute
	if ctx.Err() != nil {
		wait = 15 * time.Second
	}
	present, readAt, err := r.readPresent(tgt, id, wait)
	if err != nil {
		r.rep.Problems = append(r.rep.Problems, "final read: "+err.Error())
	}
	rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	rbs, err := env.Runbooks(rctx)
	cancel()
	if err != nil {
		r.rep.Problems = append(r.rep.Problems, "runbooks: "+err.Error())
	}
	var during []Runbook
	for _, rb := range rbs {
		if !rb.Started.Before(start.Add(-time.Minute)) {
			during = append(during, rb)
		}
	}
	r.mu.Lock()
	events := append([]Event(nil), r.events...)
	r.mu.Unlock()
	raw := Raw{LoadStart: start, LoadEnd: end, Attempts: tr.Ledger.Attempts(), Events: events, Present: present, PresentRead: readAt, Runbooks: during}
	r.rep.Missed = tr.Missed()
	return r.rep.Finish(raw, sc.Expect)
}

// waitReady waits until the workload has a healthy primary holding its lease.
func (r *runner) waitReady(ctx context.Context) (status.Workload, error) {
	deadline := time.Now().Add(2 * time.Minute)
	needBackup := false
	for _, st := range r.sc.Timeline {
		if st.Name == "restore" && st.Kind == StepAction {
			needBackup = true
		}
	}
	for {
		w, err := r.env.Status(ctx)
		if err == nil {
			healthy := false
			for _, n := range w.Nodes {
				if n.Region+"/"+n.Zone == w.Primary && n.Healthy && w.LeaseHolder == w.Primary {
					healthy = true
				}
			}
			if healthy && (!needBackup || (w.Backups.Last != nil && w.Backups.Last.ID != "")) {
				return w, nil
			}
		}
		if time.Now().After(deadline) {
			if err != nil {
				return w, fmt.Errorf("the topology is not ready: %w", err)
			}
			if needBackup {
				return w, fmt.Errorf("the topology is not ready after 2m (a restore needs a healthy primary and a base backup): primary %q, lease %q", w.Primary, w.LeaseHolder)
			}
			return w, fmt.Errorf("the topology is not ready after 2m: primary %q, lease %q", w.Primary, w.LeaseHolder)
		}
		select {
		case <-ctx.Done():
			return w, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// target builds the load's target and, for HTTP, waits until the entry
// point serves a write (the app creates its table on the first one).
func (r *runner) target(ctx context.Context, w status.Workload, id string) (target, error) {
	_, tw, err := r.env.topology()
	if err != nil {
		return nil, err
	}
	dsn, err := r.env.pgDSN(w.Writer)
	if err != nil {
		return nil, err
	}
	if r.sc.Load.Target == TargetWriter {
		nodes := map[string]string{}
		for _, n := range w.Nodes {
			nodes[n.Address] = n.Region + "/" + n.Zone
		}
		return newWriterTarget(ctx, dsn, nodes)
	}
	if len(tw.Services) == 0 {
		return nil, fmt.Errorf("load target http: workload %s runs no service (use target: writer)", tw.Name)
	}
	h := newHTTPTarget(w.HTTP, tw.Routing.Hostname, dsn, r.sc.Load)
	deadline := time.Now().Add(time.Minute)
	for i := 0; ; i++ {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		a := h.write(wctx, nil, fmt.Sprintf("warmup-%s-%d", id, i))
		cancel()
		if a.Outcome == OK {
			return h, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("the HTTP entry point %s serves no write: %s", w.HTTP, a.Error)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (r *runner) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

// timeline runs the steps in order, each at its offset or as soon as the
// one before has finished.
func (r *runner) timeline(ctx context.Context, start time.Time) {
	for _, st := range r.sc.Timeline {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(start.Add(st.At))):
		}
		r.step(ctx, st, start)
	}
}

func (r *runner) step(ctx context.Context, st Step, start time.Time) {
	timeout := 3 * time.Minute
	if st.Kind == StepAction {
		timeout = 10 * time.Minute
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var err error
	if p, ok := st.Fault.(preparer); ok && st.Kind == StepInject {
		err = p.prepare(sctx)
	}
	ev := Event{Kind: st.Kind, Name: st.Name, Line: st.Line, Planned: st.At, Start: time.Now()}
	switch {
	case err != nil:
	case st.Kind == StepInject:
		r.mu.Lock()
		r.injects[st.index] = st
		r.mu.Unlock()
		err = st.Fault.Inject(sctx)
	case st.Kind == StepHeal:
		r.mu.Lock()
		done := r.healed[st.index]
		r.healed[st.index] = true
		r.mu.Unlock()
		if done {
			return
		}
		err = st.Fault.Heal(sctx)
	case st.Kind == StepAction:
		err = st.Action.Run(sctx)
	}
	ev.End = time.Now()
	if d, ok := any(st.Fault).(Describer); ok && st.Fault != nil {
		ev.Detail = d.Describe()
	}
	if d, ok := any(st.Action).(Describer); ok && st.Action != nil {
		ev.Detail = d.Describe()
	}
	label := string(st.Kind) + " " + st.Name
	if ev.Detail != "" {
		label += " " + ev.Detail
	}
	if err != nil {
		ev.Error = err.Error()
		r.rep.addProblem(fmt.Sprintf("%s (line %d): %v", label, st.Line, err))
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	if st.Kind != StepHeal {
		r.phase = label
	}
	r.mu.Unlock()
	r.clearLive()
	result := "ok"
	if err != nil {
		result = "FAILED: " + err.Error()
	}
	fmt.Fprintf(r.log, "+%5.1fs  %s (%.2fs): %s\n", ev.Start.Sub(start).Seconds(), label, ev.End.Sub(ev.Start).Seconds(), result)
}

// healAll heals every injected fault not healed yet, the last first.
func (r *runner) healAll(ctx context.Context, start time.Time) {
	r.mu.Lock()
	var todo []Step
	for i := len(r.sc.Timeline) - 1; i >= 0; i-- {
		st := r.sc.Timeline[i]
		if _, injected := r.injects[st.index]; st.Kind == StepInject && injected && !r.healed[st.index] {
			todo = append(todo, Step{Line: st.Line, Kind: StepHeal, Name: st.Name, Fault: st.Fault, index: st.index, At: time.Since(start)})
		}
	}
	r.mu.Unlock()
	for _, st := range todo {
		r.step(ctx, st, start)
	}
}

// watch shows the live line every second and ends when the load's
// duration is over, an abort rule trips (its text is returned) or ctx ends.
func (r *runner) watch(ctx context.Context, tr *Traffic, start time.Time) string {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	end := start.Add(r.sc.Load.Duration)
	for {
		select {
		case <-ctx.Done():
			return ""
		case now := <-tick.C:
			r.live(tr, start, now)
			if len(r.sc.Plan.Abort) > 0 {
				secs := int(now.Sub(start) / time.Second)
				b := timeline(Raw{LoadStart: start, LoadEnd: start.Add(time.Duration(secs) * time.Second)}, tr.Ledger.Attempts())
				for _, rule := range r.sc.Plan.Abort {
					if rule.Tripped(b, secs) {
						return rule.Text
					}
				}
			}
			if !now.Before(end) {
				return ""
			}
		}
	}
}

func (r *runner) live(tr *Traffic, start, now time.Time) {
	if r.opts.Live == nil {
		return
	}
	secs := now.Sub(start).Seconds()
	if !r.opts.Terminal && int(secs)%5 != 0 {
		return
	}
	ok, failed := tr.Ledger.Since(now.Add(-time.Second))
	r.mu.Lock()
	phase := r.phase
	r.mu.Unlock()
	line := fmt.Sprintf("+%5.1fs / %s  %-40.40s  %4d req/s  %4d errors", secs, r.sc.Load.Duration, phase, ok+failed, failed)
	if r.opts.Terminal {
		fmt.Fprintf(r.opts.Live, "\r\033[K%s", line)
	} else {
		fmt.Fprintln(r.opts.Live, line)
	}
}

// clearLive clears the live line before another line is printed.
func (r *runner) clearLive() {
	if r.opts.Live != nil && r.opts.Terminal {
		fmt.Fprint(r.opts.Live, "\r\033[K")
	}
}

// readPresent reads which of the run's writes the database holds, trying
// until the writer endpoint answers; a read that never succeeds returns
// the zero time (nothing can be said about lost writes).
func (r *runner) readPresent(tgt target, id string, wait time.Duration) ([]string, time.Time, error) {
	deadline := time.Now().Add(wait)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ids, err := tgt.present(ctx, id)
		cancel()
		if err == nil {
			return ids, time.Now(), nil
		}
		if time.Now().After(deadline) {
			return nil, time.Time{}, err
		}
		time.Sleep(time.Second)
	}
}

// roundTrip passes raw events through JSON, so that figures computed
// from them equal those computed from report.json (no monotonic clock
// readings, the same time zones).
func roundTrip(raw Raw) (Raw, error) {
	b, err := json.Marshal(raw)
	if err != nil {
		return raw, err
	}
	var out Raw
	return out, json.Unmarshal(b, &out)
}
