package gameday

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"
)

// HistoryFile lists past game days, one JSON object a line, under the
// data directory.
const HistoryFile = "gamedays/history.jsonl"

// HistoryEntry is one past game day.
type HistoryEntry struct {
	ID       string `json:"id"`
	Scenario string `json:"scenario"`
	Strategy string `json:"strategy,omitempty"`
	Workload string `json:"workload,omitempty"`
	// Faults are the kinds of the faults injected (kill-zone, ...), once each.
	Faults     []string  `json:"faults,omitempty"`
	Started    time.Time `json:"started"`
	Passed     bool      `json:"passed"`
	Lost       int       `json:"lost_writes"`
	RPOSeconds float64   `json:"rpo_seconds"`
	RTOSeconds *float64  `json:"rto_seconds"`
	Report     string    `json:"report"`
	// Change since the previous run of the same scenario and strategy.
	RPOChange *float64 `json:"rpo_change_seconds,omitempty"`
	RTOChange *float64 `json:"rto_change_seconds,omitempty"`
}

// AppendHistory adds a report to the data directory's history.
func AppendHistory(dataDir string, r *Report) error {
	path := filepath.Join(dataDir, HistoryFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	e := HistoryEntry{ID: r.ID, Scenario: r.Scenario, Strategy: r.Topology.Strategy, Workload: r.Workload, Faults: r.FaultKinds(), Started: r.Started, Passed: r.Passed,
		Lost: len(r.Figures.Lost), RPOSeconds: r.Figures.RPOSeconds, RTOSeconds: r.Figures.RTOSeconds,
		Report: filepath.Join(r.Dir, ReportHTML)}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("history: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("history: %w", err)
	}
	return f.Close()
}

// FaultKinds lists the kinds of the faults the run injected, once each, in
// the order they came.
func (r *Report) FaultKinds() []string {
	var kinds []string
	for _, f := range r.Figures.Faults {
		if !slices.Contains(kinds, f.Name) {
			kinds = append(kinds, f.Name)
		}
	}
	return kinds
}

// History reads the data directory's past game days, oldest first, with
// how RPO and RTO moved since the previous run of the same scenario.
func History(dataDir string) ([]HistoryEntry, error) {
	path := filepath.Join(dataDir, HistoryFile)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []HistoryEntry
	prev := map[string]HistoryEntry{}
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		var e HistoryEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		key := e.Scenario + "/" + e.Strategy
		if p, ok := prev[key]; ok {
			d := e.RPOSeconds - p.RPOSeconds
			e.RPOChange = &d
			if e.RTOSeconds != nil && p.RTOSeconds != nil {
				d := *e.RTOSeconds - *p.RTOSeconds
				e.RTOChange = &d
			}
		}
		prev[key] = e
		out = append(out, e)
	}
	return out, sc.Err()
}

// PrintHistory writes the history as a table.
func PrintHistory(w io.Writer, entries []HistoryEntry) error {
	if len(entries) == 0 {
		fmt.Fprintln(w, "no game days yet: lifeline gameday run SCENARIO")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STARTED\tSCENARIO\tSTRATEGY\tRESULT\tLOST\tRPO\tRTO\tREPORT")
	for _, e := range entries {
		result := "FAILED"
		if e.Passed {
			result = "PASSED"
		}
		rto := "-"
		if e.RTOSeconds != nil {
			rto = fmt.Sprintf("%.2fs%s", *e.RTOSeconds, change(e.RTOChange))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%.2fs%s\t%s\t%s\n", e.Started.Local().Format("2006-01-02 15:04"), e.Scenario, e.Strategy, result,
			e.Lost, e.RPOSeconds, change(e.RPOChange), rto, e.Report)
	}
	return tw.Flush()
}

func change(d *float64) string {
	if d == nil {
		return ""
	}
	return fmt.Sprintf(" (%+.2fs)", *d)
}
