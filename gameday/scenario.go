package gameday

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/spec"
)

// Scenario is a parsed game-day file: what to run it on, the plan, the
// load, the timeline of faults and actions, and what must hold.
type Scenario struct {
	File        string
	Name        string
	Description string
	// Spec is the spec file to start (relative to the scenario's folder;
	// "{strategy}" is replaced by each strategy); Attach is the data
	// directory of a running topology. Exactly one is set.
	Spec, Attach         string
	SpecLine, AttachLine int
	// Workload is the workload to exercise ("" for the spec's only one).
	Workload   string
	Strategies []lifeline.Strategy
	Plan       Plan
	Load       LoadSpec
	// Timeline is sorted by offset; a fault with `for` adds its heal.
	Timeline []Step
	Expect   []Expectation

	source []byte // parsed again for each run: faults keep what they hit
}

// Plan is the human part of a game day.
type Plan struct {
	Hypothesis   string        `json:"hypothesis,omitempty"`
	Participants []Participant `json:"participants,omitempty"`
	Abort        []AbortRule   `json:"abort,omitempty"`
}

// Participant is a person and their role during the game day.
type Participant struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Load targets.
const (
	// TargetHTTP sends POST /orders (writes) and GET /orders/count (reads)
	// to the workload's global HTTP entry point.
	TargetHTTP = "http"
	// TargetWriter writes rows through the workload's writer endpoint.
	TargetWriter = "writer"
)

// LoadSpec is the load that runs for the whole game day.
type LoadSpec struct {
	Target      string        `json:"target"`
	Rate        float64       `json:"rate_per_second"`
	Writes      int           `json:"writes"`
	Reads       int           `json:"reads"`
	Duration    time.Duration `json:"duration"`
	Concurrency int           `json:"concurrency"`
	Timeout     time.Duration `json:"timeout"`
}

// StepKind says what a timeline step does.
type StepKind string

const (
	StepInject StepKind = "inject"
	StepHeal   StepKind = "heal"
	StepAction StepKind = "action"
)

// Step is one entry of the timeline.
type Step struct {
	Line int
	At   time.Duration
	Kind StepKind
	Name string // the fault's or action's name
	// For is how long a fault lasts before its heal step (0: healed at the end).
	For time.Duration
	// Fault is set for inject and heal steps (the heal step shares the
	// inject step's fault), Action for action steps.
	Fault  Fault
	Action Action
	// index numbers the faults of the timeline: a heal step heals the
	// inject step with the same index.
	index int
}

// Limits of a scenario.
const (
	MaxRate        = 5000
	MaxConcurrency = 256
	MaxDuration    = 2 * time.Hour
)

// LoadScenario reads and parses a scenario file.
func LoadScenario(path string) (*Scenario, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read scenario: %w", err)
	}
	return ParseScenario(path, data)
}

// ParseScenario decodes a scenario strictly: unknown keys, duplicate keys,
// bad durations, unknown faults and actions and expectations that do not
// parse are all reported at once as spec.Errors (FILE:LINE: what). It
// reads no other file: the spec it names is checked when it runs.
func ParseScenario(file string, data []byte) (*Scenario, error) {
	p := &scParser{file: file}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			p.add(0, "the scenario is empty")
		} else {
			p.yamlErr(err)
		}
		return nil, p.errs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.add(extra.Line, "a scenario holds one YAML document; found a second one")
		return nil, p.errs
	}
	if len(root.Content) == 0 {
		p.add(root.Line, "the scenario is empty")
		return nil, p.errs
	}
	sc := &Scenario{File: file, source: data}
	p.scenario(root.Content[0], sc)
	if len(p.errs) > 0 {
		sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Line < p.errs[j].Line })
		return nil, p.errs
	}
	return sc, nil
}

type scParser struct {
	file string
	errs spec.Errors
}

func (p *scParser) add(line int, format string, args ...any) {
	p.errs = append(p.errs, &spec.Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

var yamlLine = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

func (p *scParser) yamlErr(err error) {
	msg := err.Error()
	line := 0
	if g := yamlLine.FindStringSubmatch(msg); g != nil {
		line, _ = strconv.Atoi(g[1])
		msg = g[2]
	}
	p.add(line, "%s", msg)
}

// fields checks that n is a mapping whose keys are all known and none
// repeated, and returns its values by key.
func (p *scParser) fields(n *yaml.Node, what string, known ...string) map[string]*yaml.Node {
	n = resolve(n)
	out := map[string]*yaml.Node{}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return out
	}
	if n.Kind != yaml.MappingNode {
		p.add(n.Line, "%s: want a mapping (key: value)", what)
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if _, dup := out[k.Value]; dup {
			p.add(k.Line, "%s: key %q is already defined", what, k.Value)
			continue
		}
		if !contains(known, k.Value) {
			p.add(k.Line, "unknown key %q in %s (known keys: %s)", k.Value, what, strings.Join(known, ", "))
			continue
		}
		out[k.Value] = v
	}
	return out
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (p *scParser) str(n *yaml.Node, what string) string {
	if n == nil {
		return ""
	}
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		p.add(n.Line, "%s: want a string", what)
		return ""
	}
	return n.Value
}

func (p *scParser) integer(n *yaml.Node, what string) (int, bool) {
	s := p.str(n, what)
	if s == "" {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		p.add(n.Line, "%s %q: want a whole number", what, s)
		return 0, false
	}
	return v, true
}

func (p *scParser) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s := p.str(n, what)
	if s == "" {
		return 0, false
	}
	d, err := parseDuration(s)
	if err != nil {
		p.add(n.Line, "%s: bad duration %q: want a number with a unit, e.g. 500ms, 30s, 5m", what, s)
		return 0, false
	}
	if d < 0 {
		p.add(n.Line, "%s: bad duration %q: must not be negative", what, s)
		return 0, false
	}
	return d, true
}

func parseDuration(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	return time.ParseDuration(s)
}

func (p *scParser) list(n *yaml.Node, what string) []*yaml.Node {
	if n == nil {
		return nil
	}
	n = resolve(n)
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.add(n.Line, "%s: want a list", what)
		return nil
	}
	return n.Content
}

var nameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

func (p *scParser) scenario(n *yaml.Node, sc *Scenario) {
	f := p.fields(n, "the scenario", "name", "description", "spec", "attach", "workload", "strategies", "plan", "load", "timeline", "expect")
	sc.Name = p.str(f["name"], "name")
	if f["name"] == nil {
		p.add(n.Line, "name is required")
	} else if !nameRe.MatchString(sc.Name) {
		p.add(f["name"].Line, "name %q: want lower-case letters, digits and dashes", sc.Name)
	}
	sc.Description = p.str(f["description"], "description")
	sc.Spec = p.str(f["spec"], "spec")
	sc.Attach = p.str(f["attach"], "attach")
	if f["spec"] != nil {
		sc.SpecLine = f["spec"].Line
	}
	if f["attach"] != nil {
		sc.AttachLine = f["attach"].Line
	}
	switch {
	case sc.Spec == "" && sc.Attach == "":
		p.add(n.Line, "give spec (a spec file to start) or attach (the data directory of a running topology)")
	case sc.Spec != "" && sc.Attach != "":
		p.add(sc.AttachLine, "give spec or attach, not both")
	}
	sc.Workload = p.str(f["workload"], "workload")
	for _, s := range p.list(f["strategies"], "strategies") {
		st := lifeline.Strategy(p.str(s, "strategy"))
		switch {
		case !st.Valid():
			p.add(s.Line, "unknown strategy %q (strategies: %s)", st, strategyNames())
		case containsStrategy(sc.Strategies, st):
			p.add(s.Line, "strategy %q is listed twice", st)
		default:
			sc.Strategies = append(sc.Strategies, st)
		}
	}
	if len(sc.Strategies) > 0 {
		if sc.Attach != "" {
			p.add(f["strategies"].Line, "strategies need a spec to start: an attached topology runs the strategy it has")
		} else if len(sc.Strategies) > 1 && sc.Spec != "" && !strings.Contains(sc.Spec, "{strategy}") {
			p.add(sc.SpecLine, "spec %q: name {strategy} in it (e.g. ../{strategy}.yaml) to run under %d strategies", sc.Spec, len(sc.Strategies))
		}
	} else if strings.Contains(sc.Spec, "{strategy}") {
		p.add(sc.SpecLine, "spec %q names {strategy}: list the strategies to run it under", sc.Spec)
	}
	p.plan(f["plan"], &sc.Plan)
	if f["load"] == nil {
		p.add(n.Line, "load is required")
	} else {
		p.load(f["load"], &sc.Load)
	}
	p.timeline(f["timeline"], sc)
	for _, e := range p.list(f["expect"], "expect") {
		text := p.str(e, "expectation")
		if text == "" {
			continue
		}
		x, err := ParseExpectation(text)
		if err != nil {
			p.add(e.Line, "expect: %v", err)
			continue
		}
		x.Line = e.Line
		sc.Expect = append(sc.Expect, x)
	}
}

func containsStrategy(list []lifeline.Strategy, s lifeline.Strategy) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func strategyNames() string {
	var names []string
	for _, s := range lifeline.Strategies {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

func (p *scParser) plan(n *yaml.Node, pl *Plan) {
	if n == nil {
		return
	}
	f := p.fields(n, "plan", "hypothesis", "participants", "abort")
	pl.Hypothesis = p.str(f["hypothesis"], "hypothesis")
	for _, pn := range p.list(f["participants"], "participants") {
		pf := p.fields(pn, "participant", "name", "role")
		pt := Participant{Name: p.str(pf["name"], "participant name"), Role: p.str(pf["role"], "participant role")}
		if pt.Name == "" || pt.Role == "" {
			p.add(pn.Line, "participant: name and role are required")
			continue
		}
		pl.Participants = append(pl.Participants, pt)
	}
	for _, an := range p.list(f["abort"], "abort") {
		text := p.str(an, "abort condition")
		if text == "" {
			continue
		}
		r, err := ParseAbortRule(text)
		if err != nil {
			p.add(an.Line, "abort: %v", err)
			continue
		}
		pl.Abort = append(pl.Abort, r)
	}
}

var rateRe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s*/\s*(s|m)$`)

func (p *scParser) load(n *yaml.Node, l *LoadSpec) {
	f := p.fields(n, "load", "target", "rate", "mix", "duration", "concurrency", "timeout")
	l.Target = TargetHTTP
	if f["target"] != nil {
		l.Target = p.str(f["target"], "load target")
		if l.Target != TargetHTTP && l.Target != TargetWriter {
			p.add(f["target"].Line, "load target %q: want http (the global HTTP entry point) or writer (the writer endpoint)", l.Target)
		}
	}
	if f["rate"] == nil {
		p.add(n.Line, "load rate is required (e.g. rate: 50/s)")
	} else {
		s := p.str(f["rate"], "load rate")
		g := rateRe.FindStringSubmatch(s)
		if g == nil {
			p.add(f["rate"].Line, "load rate %q: want requests per second or minute, e.g. 50/s or 600/m", s)
		} else {
			v, _ := strconv.ParseFloat(g[1], 64)
			if g[2] == "m" {
				v /= 60
			}
			if v <= 0 || v > MaxRate {
				p.add(f["rate"].Line, "load rate %q: want above 0 and at most %d/s", s, MaxRate)
			}
			l.Rate = v
		}
	}
	l.Writes, l.Reads = 1, 0
	if f["mix"] != nil {
		mf := p.fields(f["mix"], "load mix", "writes", "reads")
		w, okw := p.integer(mf["writes"], "mix writes")
		r, okr := p.integer(mf["reads"], "mix reads")
		if !okw {
			w = 0
		}
		if !okr {
			r = 0
		}
		switch {
		case w < 0 || r < 0:
			p.add(f["mix"].Line, "load mix: weights must not be negative")
		case w+r == 0:
			p.add(f["mix"].Line, "load mix: give writes and reads weights, e.g. {writes: 80, reads: 20}")
		}
		l.Writes, l.Reads = w, r
	}
	if d, ok := p.duration(f["duration"], "load duration"); ok {
		l.Duration = d
		if d == 0 || d > MaxDuration {
			p.add(f["duration"].Line, "load duration %s: want above 0 and at most %s", d, MaxDuration)
		}
	} else if f["duration"] == nil {
		p.add(n.Line, "load duration is required (e.g. duration: 60s)")
	}
	l.Concurrency = 4
	if c, ok := p.integer(f["concurrency"], "load concurrency"); ok {
		if c < 1 || c > MaxConcurrency {
			p.add(f["concurrency"].Line, "load concurrency %d: want 1 to %d", c, MaxConcurrency)
		}
		l.Concurrency = c
	}
	l.Timeout = 2 * time.Second
	if d, ok := p.duration(f["timeout"], "load timeout"); ok {
		if d == 0 {
			p.add(f["timeout"].Line, "load timeout must be above 0")
		}
		l.Timeout = d
	}
}

// stepKeys are the keys every timeline entry may have.
var stepKeys = []string{"at", "fault", "action", "for"}

func (p *scParser) timeline(n *yaml.Node, sc *Scenario) {
	marks := map[string]bool{}
	faults := 0
	type pending struct {
		step Step
		mark string // a mark this step needs, set by an earlier fault
		line int
	}
	var steps []Step
	var needs []pending
	for _, en := range p.list(n, "timeline") {
		en = resolve(en)
		if en.Kind != yaml.MappingNode {
			p.add(en.Line, "timeline entry: want a mapping such as {at: 10s, fault: kill-zone}")
			continue
		}
		// First pass: the kind and name, to know which keys are valid.
		var faultName, actionName string
		var faultLine, actionLine int
		for i := 0; i+1 < len(en.Content); i += 2 {
			switch en.Content[i].Value {
			case "fault":
				faultName, faultLine = en.Content[i+1].Value, en.Content[i+1].Line
			case "action":
				actionName, actionLine = en.Content[i+1].Value, en.Content[i+1].Line
			}
		}
		var known []string
		var ft faultType
		var at actionType
		switch {
		case faultName != "" && actionName != "":
			p.add(actionLine, "timeline entry: give fault or action, not both")
			continue
		case faultName != "":
			var ok bool
			if ft, ok = faultTypes[faultName]; !ok {
				p.add(faultLine, "unknown fault %q (faults: %s)", faultName, strings.Join(FaultNames(), ", "))
				continue
			}
			known = append(append([]string{}, stepKeys...), ft.keys...)
		case actionName != "":
			var ok bool
			if at, ok = actionTypes[actionName]; !ok {
				p.add(actionLine, "unknown action %q (actions: %s)", actionName, strings.Join(ActionNames(), ", "))
				continue
			}
			known = append(append([]string{}, stepKeys...), at.keys...)
		default:
			p.add(en.Line, "timeline entry: give fault (one of %s) or action (one of %s)", strings.Join(FaultNames(), ", "), strings.Join(ActionNames(), ", "))
			continue
		}
		f := p.fields(en, "timeline entry "+faultName+actionName, known...)
		st := Step{Line: en.Line}
		if f["at"] == nil {
			p.add(en.Line, "timeline entry %s: at is required (an offset from the start of the load, e.g. at: 10s)", faultName+actionName)
		} else if d, ok := p.duration(f["at"], "at"); ok {
			st.At = d
			if sc.Load.Duration > 0 && d >= sc.Load.Duration {
				p.add(f["at"].Line, "at %s: the load runs for %s only", d, sc.Load.Duration)
			}
		}
		if d, ok := p.duration(f["for"], "for"); ok {
			if actionName != "" {
				p.add(f["for"].Line, "action %s: for applies to faults only", actionName)
			} else if d == 0 {
				p.add(f["for"].Line, "for must be above 0 (leave it out to heal at the end)")
			}
			st.For = d
		}
		pp := &params{p: p, f: f, entry: en}
		if faultName != "" {
			faults++
			st.Kind, st.Name, st.index = StepInject, faultName, faults
			st.Fault = ft.make(pp)
			if ft.needsFor && st.For == 0 {
				p.add(en.Line, "fault %s: for is required (how long the fault lasts)", faultName)
			}
			for _, m := range ft.marks {
				marks[m] = true
			}
		} else {
			st.Kind, st.Name = StepAction, actionName
			st.Action = at.make(pp)
			if m, ok := st.Action.(marker); ok {
				needs = append(needs, pending{step: st, mark: m.needsMark(), line: pp.line("to")})
			}
		}
		steps = append(steps, st)
		if st.Kind == StepInject && st.For > 0 {
			steps = append(steps, Step{Line: st.Line, At: st.At + st.For, Kind: StepHeal, Name: faultName, Fault: st.Fault, index: st.index})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].At < steps[j].At })
	for _, nd := range needs {
		if nd.mark == "" || marks[nd.mark] {
			// A mark set later than the action is reported when it runs.
			continue
		}
		p.add(nd.line, "action %s: no fault of the timeline records %q (a delete fault records before-delete)", nd.step.Name, nd.mark)
	}
	sc.Timeline = steps
}

// params gives a fault or action the keys of its timeline entry.
type params struct {
	p     *scParser
	f     map[string]*yaml.Node
	entry *yaml.Node
}

func (pp *params) line(key string) int {
	if n := pp.f[key]; n != nil {
		return n.Line
	}
	return pp.entry.Line
}

// String is a key's value, or def when it is absent.
func (pp *params) String(key, def string) string {
	if pp.f[key] == nil {
		return def
	}
	return pp.p.str(pp.f[key], key)
}

// Required is a key that must be present and not empty.
func (pp *params) Required(key, what string) string {
	v := pp.String(key, "")
	if v == "" && pp.f[key] == nil {
		pp.p.add(pp.entry.Line, "%s: %s is required", what, key)
	} else if v == "" {
		pp.p.add(pp.line(key), "%s: %s must not be empty", what, key)
	}
	return v
}

// Duration is a key's duration, or def.
func (pp *params) Duration(key string, def time.Duration) time.Duration {
	if d, ok := pp.p.duration(pp.f[key], key); ok {
		return d
	}
	return def
}

// Pair is a key holding a list of exactly two strings.
func (pp *params) Pair(key string) (string, string, bool) {
	n := pp.f[key]
	if n == nil {
		return "", "", false
	}
	items := pp.p.list(n, key)
	if len(items) != 2 {
		pp.p.add(n.Line, "%s: want two ends, e.g. [eu-west, eu-central]", key)
		return "", "", false
	}
	a, b := pp.p.str(items[0], key), pp.p.str(items[1], key)
	if a == b && a != "" {
		pp.p.add(n.Line, "%s: both ends are %q", key, a)
	}
	return a, b, a != "" && b != ""
}

// Errorf reports a problem with a key.
func (pp *params) Errorf(key, format string, args ...any) {
	pp.p.add(pp.line(key), format, args...)
}

// Has reports whether the entry gives a key.
func (pp *params) Has(key string) bool { return pp.f[key] != nil }

// checkNodeRef validates a node reference: an alias (e.g. "primary") or REGION/ZONE.
func (pp *params) checkNodeRef(key, v string, aliases ...string) {
	if contains(aliases, v) {
		return
	}
	if _, err := lifeline.ParseNodeID(v); err != nil {
		pp.Errorf(key, "%s %q: want %s or REGION/ZONE", key, v, strings.Join(aliases, " or "))
	}
}

// checkPartyRef validates a link end: a region, REGION/ZONE, witness, or an alias.
func (pp *params) checkPartyRef(key, v string) {
	if v == "" || v == lifeline.WitnessSite || v == "primary" || v == "active" {
		return
	}
	if strings.Contains(v, "/") {
		if _, err := lifeline.ParseNodeID(v); err != nil {
			pp.Errorf(key, "%s %q: want a region, REGION/ZONE, witness, primary or active", key, v)
		}
		return
	}
	if !nameRe.MatchString(v) {
		pp.Errorf(key, "%s %q: want a region, REGION/ZONE, witness, primary or active", key, v)
	}
}
