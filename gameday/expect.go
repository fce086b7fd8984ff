package gameday

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Expectation is one line of a scenario's expect list: METRIC OP VALUE,
// such as "rpo <= 1s", "lost-writes == 0" or "availability >= 90%".
type Expectation struct {
	Text   string  `json:"text"`
	Line   int     `json:"line,omitempty"`
	Metric string  `json:"metric"`
	Op     string  `json:"op"`
	Value  float64 `json:"value"` // seconds, a count or a percentage
	// Objective: the value is the workload's own objective ("rpo <=
	// objective"), known when the game day runs.
	Objective bool `json:"objective,omitempty"`
}

// Objectives are the workload's recovery objectives, from its spec.
type Objectives struct {
	RPO time.Duration `json:"rpo"`
	RTO time.Duration `json:"rto"`
}

// metricKind is how a metric's value is written.
type metricKind int

const (
	kindDuration metricKind = iota
	kindCount
	kindPercent
)

// metrics are what expectations can name, with what each means.
var metrics = map[string]struct {
	kind metricKind
	doc  string
}{
	"rpo":          {kindDuration, "from the oldest lost acknowledged write to the fault (0 when none is lost)"},
	"rto":          {kindDuration, "from the fault to the first successful write after the outage it caused, as the client saw it"},
	"lost-writes":  {kindCount, "acknowledged writes missing after recovery"},
	"unexpected":   {kindCount, "writes present that were never attempted (or whose attempt failed)"},
	"recovered":    {kindCount, "writes of unknown outcome that are present"},
	"errors":       {kindCount, "attempts that did not succeed"},
	"availability": {kindPercent, "successful attempts, in percent of all"},
}

var ops = []string{"<=", ">=", "==", "!=", "<", ">"}

var exprRe = regexp.MustCompile(`^\s*([a-z][a-z0-9-]*)\s*(<=|>=|==|!=|<|>)\s*(\S+)\s*$`)

// ParseExpectation parses METRIC OP VALUE.
func ParseExpectation(text string) (Expectation, error) {
	g := exprRe.FindStringSubmatch(text)
	if g == nil {
		return Expectation{}, fmt.Errorf("%q: want METRIC OP VALUE, e.g. rpo <= 1s, rto <= objective or lost-writes == 0 (ops: %s)", text, strings.Join(ops, " "))
	}
	m, ok := metrics[g[1]]
	if !ok {
		return Expectation{}, fmt.Errorf("%q: unknown metric %q (metrics: %s)", text, g[1], strings.Join(sortedKeys(metrics), ", "))
	}
	x := Expectation{Text: strings.TrimSpace(text), Metric: g[1], Op: g[2]}
	if g[3] == "objective" {
		if g[1] != "rpo" && g[1] != "rto" {
			return Expectation{}, fmt.Errorf("%q: only rpo and rto have an objective", text)
		}
		x.Objective = true
		return x, nil
	}
	v, err := parseValue(m.kind, g[3])
	if err != nil {
		return Expectation{}, fmt.Errorf("%q: %s %v", text, g[1], err)
	}
	x.Value = v
	return x, nil
}

func parseValue(kind metricKind, s string) (float64, error) {
	switch kind {
	case kindDuration:
		d, err := parseDuration(s)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("wants a duration such as 500ms or 30s, not %q", s)
		}
		return d.Seconds(), nil
	case kindPercent:
		v, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
		if err != nil || !strings.HasSuffix(s, "%") || v < 0 || v > 100 || math.IsNaN(v) {
			return 0, fmt.Errorf("wants a percentage such as 99.5%%, not %q", s)
		}
		return v, nil
	default:
		v, err := strconv.ParseUint(s, 10, 31)
		if err != nil {
			return 0, fmt.Errorf("wants a whole number, not %q", s)
		}
		return float64(v), nil
	}
}

// compare applies an operator.
func compare(got float64, op string, want float64) bool {
	switch op {
	case "<=":
		return got <= want
	case ">=":
		return got >= want
	case "==":
		return got == want
	case "!=":
		return got != want
	case "<":
		return got < want
	default:
		return got > want
	}
}

// Verdict is an expectation checked against what was measured.
type Verdict struct {
	Expectation string `json:"expectation"`
	Got         string `json:"got"`
	Passed      bool   `json:"passed"`
}

// Check evaluates expectations against figures and the workload's
// objectives: a pure function.
func Check(expect []Expectation, f Figures, obj Objectives) []Verdict {
	out := make([]Verdict, 0, len(expect))
	for _, e := range expect {
		v := Verdict{Expectation: e.Text}
		want := e.Value
		if e.Objective {
			want = obj.RPO.Seconds()
			if e.Metric == "rto" {
				want = obj.RTO.Seconds()
			}
			v.Expectation += fmt.Sprintf(" (%s)", formatMetric(kindDuration, want))
		}
		got, ok := f.metric(e.Metric)
		switch {
		case !ok:
			v.Got = "not measured: " + f.unmeasured(e.Metric)
		default:
			v.Got = formatMetric(metrics[e.Metric].kind, got)
			v.Passed = compare(got, e.Op, want)
		}
		out = append(out, v)
	}
	return out
}

func formatMetric(kind metricKind, v float64) string {
	switch kind {
	case kindDuration:
		return fmt.Sprintf("%.3fs", v)
	case kindPercent:
		return fmt.Sprintf("%.2f%%", v)
	default:
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
}

// AbortRule stops a game day early: "errors > 50% for 60s" is true once
// every second of the last 60 had more than half of its completed attempts
// fail (a second in which nothing completed counts as failing: nothing
// succeeded); "p99 > 2s for 30s" once every second of the last 30 had a
// 99th percentile latency above 2s.
type AbortRule struct {
	Text   string        `json:"text"`
	Metric string        `json:"metric"`
	Op     string        `json:"op"`
	Value  float64       `json:"value"` // percent, or seconds for p99
	For    time.Duration `json:"for"`
}

var abortRe = regexp.MustCompile(`^\s*(errors|p99)\s*(>=|>)\s*(\S+)\s+for\s+(\S+)\s*$`)

// ParseAbortRule parses "errors > N% for D" or "p99 > D for D".
func ParseAbortRule(text string) (AbortRule, error) {
	g := abortRe.FindStringSubmatch(text)
	if g == nil {
		return AbortRule{}, fmt.Errorf("%q: want \"errors > 50%% for 60s\" or \"p99 > 2s for 30s\"", text)
	}
	kind := kindPercent
	if g[1] == "p99" {
		kind = kindDuration
	}
	v, err := parseValue(kind, g[3])
	if err != nil {
		return AbortRule{}, fmt.Errorf("%q: %s %v", text, g[1], err)
	}
	d, err := parseDuration(g[4])
	if err != nil || d < time.Second {
		return AbortRule{}, fmt.Errorf("%q: for %q: want a duration of at least 1s", text, g[4])
	}
	return AbortRule{Text: strings.TrimSpace(text), Metric: g[1], Op: g[2], Value: v, For: d}, nil
}

// Tripped reports whether the rule holds over the last whole seconds of
// a per-second timeline (buckets[i] is second i of the load). now is the
// number of seconds that are complete.
func (r AbortRule) Tripped(buckets []Bucket, now int) bool {
	n := int(r.For / time.Second)
	if now > len(buckets) {
		now = len(buckets)
	}
	if n <= 0 || now < n {
		return false
	}
	for _, b := range buckets[now-n : now] {
		var v float64
		switch r.Metric {
		case "errors":
			done := b.OK + b.Errors + b.Unknown
			v = 100
			if done > 0 {
				v = 100 * float64(b.Errors+b.Unknown) / float64(done)
			}
		default:
			v = b.P99 / 1000
		}
		if !compare(v, r.Op, r.Value) {
			return false
		}
	}
	return true
}
