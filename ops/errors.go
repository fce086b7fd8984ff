package ops

import (
	"errors"
	"fmt"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/router"
	"github.com/lifeline-dr/lifeline/runbook"
)

// Kind classifies an error for the caller: the HTTP API turns it into a
// status, the CLI into an exit code.
type Kind string

const (
	// Invalid: the request itself is wrong (an unknown region, a missing
	// target). HTTP 400, exit 2.
	Invalid Kind = "invalid"
	// NotFound: what the request names does not exist. HTTP 404.
	NotFound Kind = "not_found"
	// Refused: a readiness check or a safety rule refused the change
	// (--force overrides the readiness refusals). HTTP 409, exit 3.
	Refused Kind = "refused"
	// Locked: another runbook holds the workload. HTTP 409, exit 3.
	Locked Kind = "locked"
	// Conflict: the state is not what the request expects (the runbook
	// does not wait for a decision, it was decided already). HTTP 409.
	Conflict Kind = "conflict"
	// Internal: anything else (the control store did not answer). HTTP 500.
	Internal Kind = "internal"
)

// Error is an operation that failed, with its kind.
type Error struct {
	Kind Kind
	Err  error
	// Reasons lists a refusal's reasons, one per line.
	Reasons []string
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func newError(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Err: fmt.Errorf(format, args...)}
}

// KindOf classifies any error returned by this package (or by what it
// calls): *Error keeps its kind; readiness refusals, locks, routing rules
// and unknown names get theirs; everything else is Internal.
func KindOf(err error) (Kind, []string) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, e.Reasons
	}
	var r *controller.Refusal
	switch {
	case errors.As(err, &r):
		if r.Locked {
			return Locked, r.Reasons
		}
		return Refused, r.Reasons
	case errors.Is(err, runbook.ErrLocked):
		return Locked, nil
	case errors.Is(err, router.ErrRefused):
		return Refused, nil
	case errors.Is(err, lifeline.ErrNotFound):
		return NotFound, nil
	}
	return Internal, nil
}
