package gameday

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// ReportVersion is the version of report.json's shape.
const ReportVersion = 1

// Report is a game day's outcome: the plan, what was measured, whether
// every expectation held, and the raw events every figure comes from.
type Report struct {
	Version     int          `json:"version"`
	ID          string       `json:"id"`
	Scenario    string       `json:"scenario"`
	File        string       `json:"file"`
	Description string       `json:"description,omitempty"`
	Strategy    string       `json:"strategy,omitempty"`
	Workload    string       `json:"workload"`
	Plan        Plan         `json:"plan"`
	Load        LoadSpec     `json:"load"`
	Topology    TopologyInfo `json:"topology"`
	Objectives  Objectives   `json:"objectives"`
	Started     time.Time    `json:"started"`
	Ended       time.Time    `json:"ended"`
	// Aborted names the abort rule that stopped the run early, or
	// "interrupted" (Ctrl-C).
	Aborted string `json:"aborted,omitempty"`
	// Problems are faults and actions that failed, and checks that could
	// not be made.
	Problems []string `json:"problems,omitempty"`
	// Missed counts requests not sent because every worker was busy.
	Missed   int64     `json:"missed"`
	Verdicts []Verdict `json:"expectations"`
	// Passed: every expectation held, nothing failed, nothing aborted.
	Passed  bool    `json:"passed"`
	Figures Figures `json:"figures"`
	Raw     Raw     `json:"raw"`

	// Dir is where the report's files are written.
	Dir string `json:"-"`
	mu  sync.Mutex
}

// TopologyInfo says what the game day ran on.
type TopologyInfo struct {
	DataDir  string `json:"data_dir"`
	Started  bool   `json:"started_by_gameday"`
	Spec     string `json:"spec,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	Primary  string `json:"primary_at_start,omitempty"`
}

func (r *Report) addProblem(p string) {
	r.mu.Lock()
	r.Problems = append(r.Problems, p)
	r.mu.Unlock()
}

// Finish computes the figures and verdicts from the raw events.
func (r *Report) Finish(raw Raw, expect []Expectation) error {
	raw, err := roundTrip(raw)
	if err != nil {
		return err
	}
	r.Raw = raw
	r.Figures = Analyze(raw)
	r.Verdicts = Check(expect, r.Figures, r.Objectives)
	r.Ended = time.Now()
	r.Passed = r.Aborted == "" && len(r.Problems) == 0
	for _, v := range r.Verdicts {
		r.Passed = r.Passed && v.Passed
	}
	return nil
}

// Result is PASSED or FAILED.
func (r *Report) Result() string {
	if r.Passed {
		return "PASSED"
	}
	return "FAILED"
}

// Files written by Write, in the report's folder.
const (
	ReportJSON = "report.json"
	ReportMD   = "report.md"
	ReportHTML = "report.html"
)

// Write writes report.json, report.md and report.html into r.Dir.
func (r *Report) Write() error {
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.Dir, ReportJSON), append(b, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(r.Dir, ReportMD), []byte(r.Markdown()), 0o644); err != nil {
		return err
	}
	html, err := r.HTML()
	if err != nil {
		return fmt.Errorf("report.html: %w", err)
	}
	return os.WriteFile(filepath.Join(r.Dir, ReportHTML), html, 0o644)
}

// ReadReport reads a report.json.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r.Dir = filepath.Dir(path)
	return &r, nil
}

// offset is a time as seconds since the load started.
func (r *Report) offset(t time.Time) float64 { return t.Sub(r.Raw.LoadStart).Seconds() }

// servedBy counts acknowledged writes by where they were served.
func (r *Report) servedBy() []servedCount {
	m := map[string]int{}
	for _, a := range r.Raw.Attempts {
		if a.Op == OpWrite && a.Outcome == OK {
			k := a.Region
			if a.Instance != "" {
				k += " " + a.Instance
			}
			m[k]++
		}
	}
	var out []servedCount
	for k, n := range m {
		out = append(out, servedCount{k, n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Where < out[j].Where })
	return out
}

type servedCount struct {
	Where string
	N     int
}

// ErrorCount is how many attempts failed with one message.
type ErrorCount struct {
	Message string
	N       int
	First   float64 // seconds since the load started
}

// TopErrors are the most frequent error messages of the ledger (numbers
// in them, such as ports, are kept: they tell which endpoint failed).
func (r *Report) TopErrors(n int) []ErrorCount {
	idx := map[string]int{}
	var out []ErrorCount
	for _, a := range r.Raw.Attempts {
		if a.Outcome == OK || a.Error == "" {
			continue
		}
		i, ok := idx[a.Error]
		if !ok {
			i = len(out)
			idx[a.Error] = i
			out = append(out, ErrorCount{Message: a.Error, First: r.offset(a.Start)})
		}
		out[i].N++
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].N > out[j].N })
	if len(out) > n {
		out = out[:n]
	}
	return out
}
