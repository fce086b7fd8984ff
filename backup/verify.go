package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/postgres"
)

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// RestoreCommand is the restored server's restore_command (required;
	// see RestoreOptions.RestoreCommand).
	RestoreCommand string
	// BinDir holds the PostgreSQL server binaries; Owner runs them.
	BinDir string
	Owner  *postgres.Owner
	// Address and Port the scratch server listens on: a loopback address
	// ("127.0.0.1" when empty) and a free port when 0.
	Address string
	Port    int
	// Superuser is a superuser role of the backed-up cluster ("postgres"
	// when empty); the scratch server trusts it from Address.
	Superuser string
	// Target is the point to verify; the zero value means latest.
	Target Target
	// Parallel is passed to Restore.
	Parallel int
	// HeapAllIndexed makes amcheck also verify that every heap tuple is
	// indexed (bt_index_check's second argument): thorough, slower.
	HeapAllIndexed bool
	// Timeout bounds recovery (DefaultVerifyTimeout when 0).
	Timeout time.Duration
	// Parameters are extra server settings; the defaults are small
	// (shared_buffers 32MB, max_connections 20).
	Parameters map[string]string
	// Keep leaves the scratch directory in place (for a post-mortem).
	Keep   bool
	Logger *slog.Logger
}

// DefaultVerifyTimeout bounds the recovery of a Verify.
const DefaultVerifyTimeout = time.Hour

// VerifyResult is the report of a Verify.
type VerifyResult struct {
	// Passed is true when the copy was restored, recovered to its target
	// and every check passed; otherwise Failure says why.
	Passed  bool
	Failure string
	// Restore is what Restore did (nil if it failed before choosing a backup).
	Restore *RestoreResult
	// ReachedLSN is where recovery ended (the new timeline's switch point)
	// and Timeline the timeline the promoted copy runs on.
	ReachedLSN lifeline.LSN
	Timeline   uint32
	// Amcheck reports whether amcheck was available; Indexes how many
	// B-tree indexes it checked.
	Amcheck bool
	Indexes int
	Tables  []TableCount
	// RestoreSeconds: Restore; RecoverySeconds: from server start to the end
	// of recovery; TotalSeconds: the whole Verify.
	RestoreSeconds  float64
	RecoverySeconds float64
	TotalSeconds    float64
	// Log is the end of the scratch server's log when it failed.
	Log string
}

// TableCount is the row count of one table of the restored copy.
type TableCount struct {
	Database string
	Schema   string
	Table    string
	Rows     int64
}

// Verify proves that the repository can be restored: it restores the
// latest backup (or opt.Target) into scratch/data, starts it on a loopback
// address with small settings, hot standby off and archiving off, waits until
// recovery has ended and the server is promoted, and checks that recovery
// reached its target: PostgreSQL itself stops with "recovery ended before
// configured recovery target was reached" for a time or LSN target; for
// latest, Verify compares the LSN where recovery ended with the start of the
// newest archived segment. Then, in every database that allows connections,
// it runs amcheck's bt_index_check on every valid B-tree index (when the
// amcheck extension is installed) and counts the rows of every user table.
// It stops the server and removes scratch (unless opt.Keep).
//
// scratch must be empty or absent. A failed check returns the result
// (Passed false, Failure and Log filled in) and an error wrapping
// ErrVerifyFailed, and ErrRecoveryIncomplete, ErrWALGap, ErrCorrupt or
// ErrWrongKey where one applies.
func (r *Repo) Verify(ctx context.Context, scratch string, opt VerifyOptions) (*VerifyResult, error) {
	started := time.Now()
	if opt.Address == "" {
		opt.Address = "127.0.0.1"
	}
	if opt.Superuser == "" {
		opt.Superuser = "postgres"
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultVerifyTimeout
	}
	target := opt.Target
	if target == (Target{}) {
		target = Target{Latest: true}
	}
	if opt.BinDir == "" || opt.RestoreCommand == "" {
		return nil, errors.New("verify: VerifyOptions needs BinDir and RestoreCommand")
	}
	log := discardLogger(opt.Logger).With("verify", r.workload)
	if _, err := prepareDir(scratch, opt.Owner); err != nil {
		return nil, fmt.Errorf("verify in %s: %w", scratch, err)
	}
	if !opt.Keep {
		defer os.RemoveAll(scratch)
	}
	if err := opt.Owner.CheckReachable(scratch); err != nil {
		return nil, fmt.Errorf("verify in %s: %w", scratch, err)
	}
	port := opt.Port
	if port == 0 {
		p, err := freePort(opt.Address)
		if err != nil {
			return nil, fmt.Errorf("verify: %w", err)
		}
		port = p
	}
	res := &VerifyResult{}
	fail := func(err error) (*VerifyResult, error) {
		res.Passed, res.Failure = false, err.Error()
		res.TotalSeconds = time.Since(started).Seconds()
		log.Warn("verification failed", "err", err)
		return res, fmt.Errorf("verify %s: %w: %w", r.workload, ErrVerifyFailed, err)
	}

	params := map[string]string{
		"shared_buffers": "32MB", "max_connections": "20",
		// Connections are refused until recovery has ended, so that Start
		// returns only then; and hot standby's checks of max_connections & co.
		// against the source's values do not apply.
		"hot_standby": "off", "archive_mode": "off",
		"max_wal_senders": "0", "max_replication_slots": "0", "wal_level": "replica",
		"synchronous_standby_names": "",
	}
	for k, v := range opt.Parameters {
		params[k] = v
	}
	inst := postgres.New(postgres.Config{
		Name: "verify-" + r.workload, BinDir: opt.BinDir, Dir: scratch, Owner: opt.Owner,
		Address: opt.Address, Port: port, Superuser: opt.Superuser,
		Trust: trustFor(opt.Address), Parameters: params, Logger: opt.Logger,
	})
	rr, err := r.Restore(ctx, inst.DataDir(), target, RestoreOptions{
		RestoreCommand: opt.RestoreCommand, Owner: opt.Owner, Parallel: opt.Parallel, Logger: opt.Logger,
	})
	res.Restore = rr
	res.RestoreSeconds = time.Since(started).Seconds()
	if err != nil {
		return fail(err)
	}
	if err := inst.WriteConfig(postgres.Settings{AppName: "lifeline_verify"}); err != nil {
		return fail(err)
	}
	recStart := time.Now()
	sctx, cancel := context.WithTimeout(ctx, opt.Timeout)
	defer cancel()
	err = inst.Start(sctx)
	defer func() {
		stctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_ = inst.Stop(stctx)
	}()
	if err != nil {
		res.Log = logTail(inst.LogFile(), 30)
		if strings.Contains(res.Log, "recovery ended before configured recovery target was reached") {
			return fail(fmt.Errorf("%w: %s", ErrRecoveryIncomplete, lastFatal(res.Log, err)))
		}
		return fail(fmt.Errorf("the restored server did not come up: %s", lastFatal(res.Log, err)))
	}
	res.RecoverySeconds = time.Since(recStart).Seconds()

	st, err := inst.Status(ctx)
	if err != nil {
		return fail(err)
	}
	if st.InRecovery {
		return fail(errors.New("the restored server is still in recovery"))
	}
	res.Timeline = uint32(st.Timeline)
	reached, err := switchPoint(inst.DataDir(), res.Timeline)
	if err != nil {
		return fail(err)
	}
	res.ReachedLSN = reached
	switch t := rr.Target; {
	case t.Latest && reached < rr.LastWALStart:
		return fail(fmt.Errorf("%w: recovery ended at %s, but the archive holds WAL up to segment %s (from %s): a segment is missing or unreadable",
			ErrRecoveryIncomplete, reached, rr.LastWAL, rr.LastWALStart))
	case t.LSN != 0 && reached < t.LSN:
		return fail(fmt.Errorf("%w: recovery ended at %s, before the target %s", ErrRecoveryIncomplete, reached, t.LSN))
	}
	if err := checkDatabases(ctx, inst, opt.HeapAllIndexed, res); err != nil {
		res.Log = logTail(inst.LogFile(), 30)
		return fail(err)
	}
	res.Passed = true
	res.TotalSeconds = time.Since(started).Seconds()
	log.Info("verified", "backup", rr.Backup.ID, "tables", len(res.Tables), "indexes", res.Indexes, "seconds", res.TotalSeconds)
	return res, nil
}

// trustFor lists the client addresses of a local connection to addr: Linux
// gives loopback connections the source 127.0.0.1 whatever 127.x address
// they are made to.
func trustFor(addr string) []string {
	if addr == "127.0.0.1" {
		return []string{addr}
	}
	return []string{addr, "127.0.0.1"}
}

func freePort(addr string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err != nil {
		return 0, fmt.Errorf("find a free port on %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// switchPoint reads where timeline tli began from its history file in
// pg_wal: the LSN at which recovery ended before promotion.
func switchPoint(dataDir string, tli uint32) (lifeline.LSN, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "pg_wal", historyName(tli)))
	if err != nil {
		return 0, fmt.Errorf("end of recovery: %w", err)
	}
	h, err := parseHistory(b)
	if err != nil || len(h) == 0 {
		return 0, fmt.Errorf("end of recovery: %s: unreadable history (%v)", historyName(tli), err)
	}
	return h[len(h)-1].end, nil
}

func logTail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// lastFatal picks the lines of the log that explain a failed start: FATAL
// and PANIC lines and what restore_command printed (lifeline's errors).
func lastFatal(log string, err error) string {
	var keep []string
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "the database system is starting up") {
			continue // Start's own connection attempts
		}
		if strings.Contains(l, "FATAL:") || strings.Contains(l, "PANIC:") || strings.Contains(l, "fetch ") {
			keep = append(keep, strings.TrimSpace(l))
		}
	}
	if len(keep) == 0 {
		return err.Error()
	}
	return strings.Join(keep, "; ")
}

// checkDatabases runs amcheck and the row counts in every database.
func checkDatabases(ctx context.Context, inst *postgres.Instance, heapAll bool, res *VerifyResult) error {
	conn, err := inst.Connect(ctx)
	if err != nil {
		return err
	}
	rows, err := conn.Query(ctx, "SELECT datname FROM pg_database WHERE datallowconn ORDER BY datname")
	var dbs []string
	if err == nil {
		dbs, err = pgx.CollectRows(rows, pgx.RowTo[string])
	}
	conn.Close(context.Background())
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	res.Amcheck = true
	for _, db := range dbs {
		if err := checkDatabase(ctx, inst, db, heapAll, res); err != nil {
			return fmt.Errorf("database %s: %w", db, err)
		}
	}
	return nil
}

func checkDatabase(ctx context.Context, inst *postgres.Instance, db string, heapAll bool, res *VerifyResult) error {
	conn, err := pgx.Connect(ctx, inst.ConnString(quoteConnValue(db)))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if res.Amcheck {
		if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS amcheck"); err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || (pe.Code != "58P01" && pe.Code != "0A000") {
				return fmt.Errorf("create extension amcheck: %w", err)
			}
			res.Amcheck = false // not installed: skip index checks everywhere
		}
	}
	if res.Amcheck {
		rows, err := conn.Query(ctx, `
			SELECT c.oid::regclass::text FROM pg_index i
			JOIN pg_class c ON c.oid = i.indexrelid
			JOIN pg_am a ON a.oid = c.relam
			WHERE a.amname = 'btree' AND i.indisvalid AND i.indisready AND c.relpersistence <> 't'
			ORDER BY 1`)
		if err != nil {
			return fmt.Errorf("list indexes: %w", err)
		}
		idx, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("list indexes: %w", err)
		}
		for _, name := range idx {
			if _, err := conn.Exec(ctx, "SELECT bt_index_check($1::regclass, $2)", name, heapAll); err != nil {
				return fmt.Errorf("amcheck index %s: %w", name, err)
			}
			res.Indexes++
		}
	}
	rows, err := conn.Query(ctx, `
		SELECT n.nspname, c.relname FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
		  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%'
		ORDER BY 1, 2`)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	type table struct{ schema, name string }
	tables, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (table, error) {
		var t table
		err := row.Scan(&t.schema, &t.name)
		return t, err
	})
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		var n int64
		q := "SELECT count(*) FROM " + pgx.Identifier{t.schema, t.name}.Sanitize()
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			return fmt.Errorf("count %s.%s: %w", t.schema, t.name, err)
		}
		res.Tables = append(res.Tables, TableCount{Database: db, Schema: t.schema, Table: t.name, Rows: n})
	}
	return nil
}

// quoteConnValue quotes a keyword/value connection string value.
func quoteConnValue(v string) string {
	if v != "" && !strings.ContainsAny(v, ` '\`) {
		return v
	}
	return connQuote(v)
}
