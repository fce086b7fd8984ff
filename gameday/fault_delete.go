package gameday

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// MarkBeforeDelete is the time a delete fault records: every transaction
// its statement could see committed before it, and the statement itself
// commits after it, so a restore to it holds exactly what was deleted.
const MarkBeforeDelete = "before-delete"

// MarkStart is when the load and the timeline started.
const MarkStart = "start"

// deleteFault runs an accidental statement (a DELETE or a DROP) through
// the writer endpoint, as a person at a psql prompt would. It records the
// time just before its commit (read inside its transaction, after the
// statement ran) for a `restore` action to recover the rows to. It has
// nothing to heal: deleted rows come back by restore.
type deleteFault struct {
	bound
	sql  string
	dsn  string
	rows int64
	at   time.Time
}

func init() {
	registerFault("delete", faultType{keys: []string{"sql"}, marks: []string{MarkBeforeDelete}, make: func(p *params) Fault {
		return &deleteFault{sql: p.Required("sql", "delete")}
	}})
}

func (f *deleteFault) Name() string { return "delete" }

func (f *deleteFault) Describe() string {
	return fmt.Sprintf("%q: %d rows, before-delete %s", f.sql, f.rows, f.at.Format(time.RFC3339Nano))
}

func (f *deleteFault) prepare(ctx context.Context) error {
	dsn, err := f.env.writerDSN(ctx)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	f.dsn = dsn
	return nil
}

func (f *deleteFault) Inject(ctx context.Context) error {
	if f.dsn == "" {
		if err := f.prepare(ctx); err != nil {
			return err
		}
	}
	conn, err := pgx.Connect(ctx, f.dsn)
	if err != nil {
		return fmt.Errorf("delete: connect to the writer endpoint: %w", err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	defer tx.Rollback(context.Background())
	tag, err := tx.Exec(ctx, f.sql)
	if err != nil {
		return fmt.Errorf("delete: %s: %w", f.sql, err)
	}
	var before time.Time
	if err := tx.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&before); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("delete: commit: %w", err)
	}
	f.rows, f.at = tag.RowsAffected(), before
	f.env.Mark(MarkBeforeDelete, before)
	f.env.logf("delete: %s removed %d rows; before-delete is %s", f.sql, f.rows, before.Format(time.RFC3339Nano))
	return nil
}

func (f *deleteFault) Heal(context.Context) error { return nil }
