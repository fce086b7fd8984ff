package gameday

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Event is one step of the timeline as it ran.
type Event struct {
	Kind   StepKind `json:"kind"`
	Name   string   `json:"name"`
	Detail string   `json:"detail,omitempty"`
	Line   int      `json:"line,omitempty"`
	// Planned is the step's offset in the scenario.
	Planned time.Duration `json:"planned"`
	// Start and End bound the step's own command: for a fault, it was in
	// effect by End.
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Error string    `json:"error,omitempty"`
}

// Raw is everything a game day observed: every figure of a report is a
// pure function of it (Analyze), so anyone can recompute them.
type Raw struct {
	LoadStart time.Time `json:"load_start"`
	LoadEnd   time.Time `json:"load_end"`
	Attempts  []Attempt `json:"attempts"`
	Events    []Event   `json:"events"`
	// Present are the ids of this run's writes that the database held
	// after recovery, read at PresentRead; a zero PresentRead is a final
	// read that failed: no write is then called lost or unexpected.
	Present     []string  `json:"present"`
	PresentRead time.Time `json:"present_read"`
	Runbooks    []Runbook `json:"runbooks,omitempty"`
}

// Figures are what a game day measured.
type Figures struct {
	Attempts     int     `json:"attempts"`
	Writes       int     `json:"writes"`
	Reads        int     `json:"reads"`
	OK           int     `json:"ok"`
	Errors       int     `json:"errors"`
	Unknown      int     `json:"unknown"`
	Availability float64 `json:"availability_percent"`
	SetResult
	// Unread: the database could not be read after recovery, so lost,
	// recovered and unexpected writes (and the RPO) are not measured.
	Unread bool `json:"unread,omitempty"`
	// RPOSeconds: from the oldest lost acknowledged write to the first
	// fault; 0 when none is lost (or every lost write came after it).
	RPOSeconds float64 `json:"rpo_seconds"`
	// RTOSeconds: the longest of the faults' RTOs; nil when a fault was
	// never followed by a successful write.
	RTOSeconds *float64       `json:"rto_seconds"`
	Faults     []FaultFigures `json:"faults"`
	Phases     []Phase        `json:"phases"`
	Timeline   []Bucket       `json:"timeline"`
}

// FaultFigures are one fault's measures.
type FaultFigures struct {
	Name   string    `json:"name"`
	Detail string    `json:"detail,omitempty"`
	At     time.Time `json:"at"`
	// InEffect is when the fault's command returned.
	InEffect time.Time `json:"in_effect"`
	// FirstWrite is the first successful write started once the fault had
	// cost a write (see outageStart), or once it was in effect when it cost
	// none: its end minus At is the RTO a client saw.
	FirstWrite *Attempt `json:"first_write,omitempty"`
	RTOSeconds *float64 `json:"rto_seconds"`
}

// Phase is a span of the run with its load's figures.
type Phase struct {
	Name    string    `json:"name"`
	Start   time.Time `json:"start"`
	End     time.Time `json:"end"`
	Count   int       `json:"count"`
	OK      int       `json:"ok"`
	Errors  int       `json:"errors"` // failed and unknown
	P50MS   float64   `json:"p50_ms"`
	P90MS   float64   `json:"p90_ms"`
	P99MS   float64   `json:"p99_ms"`
	Runbook bool      `json:"runbook,omitempty"` // a runbook step
}

// Bucket is one second of the load (attempts by the second they ended).
type Bucket struct {
	Second    int     `json:"second"`
	OK        int     `json:"ok"`
	Errors    int     `json:"errors"`
	Unknown   int     `json:"unknown"`
	WritesOK  int     `json:"writes_ok"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
	Completed int     `json:"completed"`
}

// Analyze computes every figure from the raw events: a pure function.
func Analyze(raw Raw) Figures {
	f := Figures{Attempts: len(raw.Attempts)}
	attempts := append([]Attempt(nil), raw.Attempts...)
	sort.SliceStable(attempts, func(i, j int) bool { return attempts[i].Start.Before(attempts[j].Start) })
	for _, a := range attempts {
		if a.Op == OpWrite {
			f.Writes++
		} else {
			f.Reads++
		}
		switch a.Outcome {
		case OK:
			f.OK++
		case Unknown:
			f.Unknown++
		default:
			f.Errors++
		}
	}
	if f.Attempts > 0 {
		f.Availability = round(100*float64(f.OK)/float64(f.Attempts), 4)
	}
	if raw.PresentRead.IsZero() {
		f.Unread = true
		f.SetResult = SetResult{Lost: []string{}, Recovered: []string{}, Unexpected: []string{}}
	} else {
		f.SetResult = CheckSet(attempts, raw.Present)
	}
	f.Faults = []FaultFigures{}
	var injects []Event
	for _, e := range raw.Events {
		if e.Kind == StepInject {
			injects = append(injects, e)
		}
	}
	for i, e := range injects {
		until := raw.LoadEnd
		if i+1 < len(injects) {
			until = injects[i+1].Start
		}
		ff := FaultFigures{Name: e.Name, Detail: e.Detail, At: e.Start, InEffect: e.End}
		from := outageStart(attempts, e.End, until)
		for j := range attempts {
			a := attempts[j]
			if a.Op == OpWrite && a.Outcome == OK && !a.Start.Before(from) {
				ff.FirstWrite = &a
				ff.RTOSeconds = seconds(a.End.Sub(e.Start))
				break
			}
		}
		f.Faults = append(f.Faults, ff)
	}
	for i, ff := range f.Faults {
		if ff.RTOSeconds == nil {
			f.RTOSeconds = nil
			break
		}
		if i == 0 || *ff.RTOSeconds > *f.RTOSeconds {
			f.RTOSeconds = seconds(time.Duration(*ff.RTOSeconds * float64(time.Second)))
		}
	}
	if len(f.Lost) > 0 && len(f.Faults) > 0 {
		lost := map[string]bool{}
		for _, id := range f.Lost {
			lost[id] = true
		}
		var oldest time.Time
		for _, a := range attempts {
			if a.Op == OpWrite && a.Outcome == OK && lost[a.ID] && (oldest.IsZero() || a.End.Before(oldest)) {
				oldest = a.End
			}
		}
		if span := f.Faults[0].At.Sub(oldest); span > 0 {
			f.RPOSeconds = *seconds(span)
		}
	}
	f.Phases = phases(raw, f, attempts)
	f.Timeline = timeline(raw, attempts)
	return f
}

// outageStart is when a fault in effect from `from` first cost a write:
// the earliest end of a write that did not succeed among those started
// from then until the next fault. A fault that cost none (its first
// writes succeed) starts its count at `from`. So an outage that begins a
// few seconds after the fault (a fence once a lease runs out) is measured
// to its end, not to a write that slipped through before it began.
func outageStart(attempts []Attempt, from, until time.Time) time.Time {
	var first time.Time
	for _, a := range attempts {
		if a.Op == OpWrite && a.Outcome != OK && !a.Start.Before(from) && a.Start.Before(until) && (first.IsZero() || a.End.Before(first)) {
			first = a.End
		}
	}
	if first.IsZero() {
		return from
	}
	return first
}

func seconds(d time.Duration) *float64 {
	v := round(d.Seconds(), 6)
	return &v
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

// phases: before the first fault, the outage (first fault until the first
// write succeeded after it), after; then every runbook step that ran
// during the load.
func phases(raw Raw, f Figures, attempts []Attempt) []Phase {
	var out []Phase
	if len(f.Faults) == 0 {
		out = append(out, Phase{Name: "steady", Start: raw.LoadStart, End: raw.LoadEnd})
	} else {
		first := f.Faults[0]
		out = append(out, Phase{Name: "before the fault", Start: raw.LoadStart, End: first.At})
		recovered := raw.LoadEnd
		if first.FirstWrite != nil {
			recovered = first.FirstWrite.End
		}
		out = append(out, Phase{Name: "outage", Start: first.At, End: recovered})
		if recovered.Before(raw.LoadEnd) {
			out = append(out, Phase{Name: "after recovery", Start: recovered, End: raw.LoadEnd})
		}
	}
	for _, rb := range raw.Runbooks {
		for _, s := range rb.Steps {
			if s.Started.IsZero() || s.Finished.IsZero() || s.Finished.Before(raw.LoadStart) || s.Started.After(raw.LoadEnd) {
				continue
			}
			out = append(out, Phase{Name: rb.Kind + ": " + s.Name, Start: s.Started, End: s.Finished, Runbook: true})
		}
	}
	for i := range out {
		p := &out[i]
		var lat []float64
		for _, a := range attempts {
			if a.Start.Before(p.Start) || !a.Start.Before(p.End) {
				continue
			}
			p.Count++
			if a.Outcome == OK {
				p.OK++
			} else {
				p.Errors++
			}
			lat = append(lat, ms(a.Latency()))
		}
		p.P50MS, p.P90MS, p.P99MS = percentile(lat, 50), percentile(lat, 90), percentile(lat, 99)
	}
	return out
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }

// percentile is the nearest-rank percentile; it sorts xs.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	rank := int(math.Ceil(p / 100 * float64(len(xs))))
	if rank < 1 {
		rank = 1
	}
	return xs[rank-1]
}

// timeline buckets attempts by the second, counted from the load's start,
// in which they ended.
func timeline(raw Raw, attempts []Attempt) []Bucket {
	n := int(math.Ceil(raw.LoadEnd.Sub(raw.LoadStart).Seconds()))
	for _, a := range attempts {
		if s := int(a.End.Sub(raw.LoadStart) / time.Second); s+1 > n {
			n = s + 1
		}
	}
	if n < 0 {
		n = 0
	}
	out := make([]Bucket, n)
	lat := make([][]float64, n)
	for i := range out {
		out[i].Second = i
	}
	for _, a := range attempts {
		s := int(a.End.Sub(raw.LoadStart) / time.Second)
		if s < 0 {
			s = 0
		}
		b := &out[s]
		b.Completed++
		switch a.Outcome {
		case OK:
			b.OK++
			if a.Op == OpWrite {
				b.WritesOK++
			}
		case Unknown:
			b.Unknown++
		default:
			b.Errors++
		}
		lat[s] = append(lat[s], ms(a.Latency()))
	}
	for i := range out {
		out[i].P50, out[i].P99 = percentile(lat[i], 50), percentile(lat[i], 99)
	}
	return out
}

// metric is an expectation's value; ok is false when it was not measured.
func (f Figures) metric(name string) (float64, bool) {
	switch name {
	case "rpo":
		return f.RPOSeconds, len(f.Faults) > 0 && !f.Unread
	case "rto":
		if f.RTOSeconds == nil {
			return 0, false
		}
		return *f.RTOSeconds, true
	case "lost-writes":
		return float64(len(f.Lost)), !f.Unread
	case "unexpected":
		return float64(len(f.Unexpected)), !f.Unread
	case "recovered":
		return float64(len(f.Recovered)), !f.Unread
	case "errors":
		return float64(f.Errors + f.Unknown), true
	case "availability":
		return f.Availability, f.Attempts > 0
	}
	return 0, false
}

// RPOText is the RPO with the count of lost writes ("0.00s (0 lost)"), or
// why it was not measured.
func (f Figures) RPOText() string {
	if f.Unread {
		return "not measured (" + f.unmeasured("rpo") + ")"
	}
	return fmt.Sprintf("%.2fs (%d lost)", f.RPOSeconds, len(f.Lost))
}

// unmeasured says why a metric has no value.
func (f Figures) unmeasured(name string) string {
	switch {
	case f.Unread && (name == "rpo" || name == "lost-writes" || name == "unexpected" || name == "recovered"):
		return "the database could not be read after recovery"
	case (name == "rpo" || name == "rto") && len(f.Faults) == 0:
		return "no fault was injected"
	case name == "rto":
		for _, ff := range f.Faults {
			if ff.RTOSeconds == nil {
				return fmt.Sprintf("no write succeeded after %s %s", ff.Name, ff.Detail)
			}
		}
	case name == "availability":
		return "no attempt was made"
	}
	return "unknown metric"
}
