package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/lifeline-dr/lifeline"
)

// ControlData is pg_controldata's output, by field name.
func (i *Instance) ControlData(ctx context.Context) (map[string]string, error) {
	out, err := i.command(ctx, nil, "pg_controldata", "-D", i.DataDir()).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("pg_controldata %s: %w: %s", i.cfg.Name, err, lastLines(out, 5))
	}
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return m, nil
}

// ShutdownCheckpoint is where a primary that was shut down cleanly wrote
// its shutdown checkpoint, and on which timeline: every standby that
// replayed past it holds all the primary ever wrote, and the stopped
// server can follow one promoted there without a rewind. It is an error
// when the server was not shut down cleanly as a primary.
func (i *Instance) ShutdownCheckpoint(ctx context.Context) (lifeline.LSN, int64, error) {
	m, err := i.ControlData(ctx)
	if err != nil {
		return 0, 0, err
	}
	if st := m["Database cluster state"]; st != "shut down" {
		return 0, 0, fmt.Errorf("%s was not shut down cleanly as a primary (cluster state %q)", i.cfg.Name, st)
	}
	lsn, err := lifeline.ParseLSN(m["Latest checkpoint location"])
	if err != nil {
		return 0, 0, fmt.Errorf("%s: checkpoint location: %w", i.cfg.Name, err)
	}
	tli, err := strconv.ParseInt(m["Latest checkpoint's TimeLineID"], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: checkpoint timeline: %w", i.cfg.Name, err)
	}
	return lsn, tli, nil
}
