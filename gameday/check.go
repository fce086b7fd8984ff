package gameday

import "sort"

// SetResult classifies a load's writes as Jepsen's set checker does,
// against the ids that the database holds after recovery.
type SetResult struct {
	// Lost: acknowledged, missing after recovery.
	Lost []string `json:"lost"`
	// Recovered: outcome unknown, present.
	Recovered []string `json:"recovered"`
	// Unexpected: present, but never attempted, or every attempt of it
	// was refused (always a failure).
	Unexpected []string `json:"unexpected"`
}

// CheckSet is the set checker: a pure function of the ledger's writes and
// the ids present after recovery. Reads are ignored.
func CheckSet(attempts []Attempt, present []string) SetResult {
	type seen struct{ ok, unknown, failed bool }
	byID := map[string]*seen{}
	for _, a := range attempts {
		if a.Op != OpWrite {
			continue
		}
		s := byID[a.ID]
		if s == nil {
			s = &seen{}
			byID[a.ID] = s
		}
		switch a.Outcome {
		case OK:
			s.ok = true
		case Unknown:
			s.unknown = true
		default:
			s.failed = true
		}
	}
	have := make(map[string]bool, len(present))
	r := SetResult{Lost: []string{}, Recovered: []string{}, Unexpected: []string{}}
	for _, id := range present {
		if have[id] {
			continue
		}
		have[id] = true
		s := byID[id]
		switch {
		case s == nil || (!s.ok && !s.unknown):
			r.Unexpected = append(r.Unexpected, id)
		case !s.ok && s.unknown:
			r.Recovered = append(r.Recovered, id)
		}
	}
	for id, s := range byID {
		if s.ok && !have[id] {
			r.Lost = append(r.Lost, id)
		}
	}
	sort.Strings(r.Lost)
	sort.Strings(r.Recovered)
	sort.Strings(r.Unexpected)
	return r
}
