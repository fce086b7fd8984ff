package gameday

import (
	"sync"
	"time"
)

// Outcome is what a client knows about one attempt.
type Outcome string

const (
	// OK: acknowledged (the write committed, the read answered).
	OK Outcome = "ok"
	// Failed: refused before it could take effect (the connection was
	// refused, the statement was rejected).
	Failed Outcome = "error"
	// Unknown: it may or may not have taken effect (a timeout, a reset,
	// a server error after the request was sent).
	Unknown Outcome = "unknown"
)

// Op is an attempt's kind.
const (
	OpWrite = "write"
	OpRead  = "read"
)

// Attempt is one request of the load, as the ledger records it.
type Attempt struct {
	ID       string    `json:"id"`
	Op       string    `json:"op"`
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Outcome  Outcome   `json:"outcome"`
	Instance string    `json:"instance,omitempty"`
	Region   string    `json:"region,omitempty"`
	Error    string    `json:"error,omitempty"`
}

// Latency is how long the attempt took.
func (a Attempt) Latency() time.Duration { return a.End.Sub(a.Start) }

// Ledger records every attempt of a load. It is safe for concurrent use.
type Ledger struct {
	mu       sync.Mutex
	attempts []Attempt
}

// Add records an attempt.
func (l *Ledger) Add(a Attempt) {
	l.mu.Lock()
	l.attempts = append(l.attempts, a)
	l.mu.Unlock()
}

// Attempts returns a copy of every attempt so far, in the order they ended.
func (l *Ledger) Attempts() []Attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Attempt(nil), l.attempts...)
}

// Since counts the attempts that ended after t, by outcome.
func (l *Ledger) Since(t time.Time) (ok, failed int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.attempts) - 1; i >= 0 && l.attempts[i].End.After(t); i-- {
		if l.attempts[i].Outcome == OK {
			ok++
		} else {
			failed++
		}
	}
	return ok, failed
}
