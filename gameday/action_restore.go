package gameday

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline/postgres"
)

// restore recovers what a delete fault removed, as an operator would:
// `lifeline restore --to-time T --into DIR --start` builds a side instance
// at the time the fault recorded (to: before-delete), then the table's
// rows that the workload lacks are copied back from it through the writer
// endpoint (rows it still has are left alone). A dropped table is
// recreated whole with pg_dump. The side instance is stopped afterwards;
// its directory is in the run's scratch folder (kept with --keep).
type restore struct {
	bound
	to, table, region string
	rows              int64
	target            time.Time
}

var tableRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

func init() {
	registerAction("restore", actionType{keys: []string{"to", "table", "region"}, make: func(p *params) Action {
		a := &restore{to: p.String("to", MarkBeforeDelete), table: p.Required("table", "restore"), region: p.String("region", "")}
		if a.table != "" && !tableRe.MatchString(a.table) {
			p.Errorf("table", "restore: table %q: want a table name, optionally schema.table", a.table)
		}
		return a
	}})
}

func (a *restore) Name() string      { return "restore" }
func (a *restore) needsMark() string { return a.to }

func (a *restore) Describe() string {
	return fmt.Sprintf("%d rows of %s restored from %s", a.rows, a.table, a.target.Format(time.RFC3339Nano))
}

func (a *restore) Run(ctx context.Context) error {
	t, ok := a.env.MarkOf(a.to)
	if !ok {
		return fmt.Errorf("restore: no %s time recorded (did the delete fault run?)", a.to)
	}
	a.target = t
	dsn, err := a.env.writerDSN(ctx)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := archivedPast(ctx, dsn, 2*time.Minute); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	side, stop, err := a.startSide(ctx, t)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer stop()
	sideDSN, err := a.env.sideDSN(side)
	if err != nil {
		return err
	}
	n, err := copyBack(ctx, sideDSN, dsn, a.table)
	if err != nil {
		return fmt.Errorf("restore %s: %w", a.table, err)
	}
	a.rows = n
	a.env.logf("restore: %d rows of %s copied back from the side instance at %s", n, a.table, t.Format(time.RFC3339Nano))
	return nil
}

// archivedPast switches the primary to a new WAL segment and waits until
// the archive holds the one that was current: a point-in-time restore
// needs WAL past its target.
func archivedPast(ctx context.Context, dsn string, wait time.Duration) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to the writer endpoint: %w", err)
	}
	defer conn.Close(context.Background())
	var current string
	if err := conn.QueryRow(ctx, "SELECT pg_walfile_name(pg_current_wal_lsn())").Scan(&current); err != nil {
		return fmt.Errorf("current WAL segment: %w", err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
		return fmt.Errorf("switch WAL: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		var last *string
		if err := conn.QueryRow(ctx, "SELECT last_archived_wal FROM pg_stat_archiver").Scan(&last); err != nil {
			return fmt.Errorf("archiver status: %w", err)
		}
		if last != nil && len(*last) == 24 && *last >= current {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("WAL segment %s not archived after %s", current, wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startSide runs `lifeline restore ... --start` and waits until the side
// instance serves. stop ends it (SIGINT to that process, by its id).
func (a *restore) startSide(ctx context.Context, t time.Time) (addr string, stop func(), err error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	into, err := os.MkdirTemp(a.env.Scratch, "restore-")
	if err != nil {
		return "", nil, err
	}
	// The side instance runs as the postgres user, which must reach it.
	if err := os.Chmod(into, 0o755); err != nil {
		return "", nil, err
	}
	args := []string{"restore", "--to-time", t.Format(time.RFC3339Nano), "--into", into, "--start", "--port", fmt.Sprint(port), "--data-dir", a.env.DataDir}
	if a.region != "" {
		args = append(args, "--region", a.region)
	}
	if a.env.Workload != "" {
		args = append(args, "--workload", a.env.Workload)
	}
	cmd := exec.Command(a.env.Binary, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	a.env.logf("restore: lifeline %s", strings.Join(args, " "))
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "side instance running") {
				close(ready)
			}
		}
		_ = cmd.Wait()
		close(done)
	}()
	stop = func() {
		_ = cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-done:
		case <-time.After(time.Minute):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	select {
	case <-ready:
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(port)), stop, nil
	case <-done:
		return "", nil, fmt.Errorf("lifeline restore exited: %s", strings.TrimSpace(stderr.String()))
	case <-ctx.Done():
		stop()
		return "", nil, ctx.Err()
	case <-time.After(5 * time.Minute):
		stop()
		return "", nil, fmt.Errorf("no side instance after 5m: %s", strings.TrimSpace(stderr.String()))
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// copyBack puts the side instance's rows of table that the target lacks
// back into it (by its unique keys), or the whole table when the target
// has none any more. It returns how many rows it inserted.
func copyBack(ctx context.Context, sideDSN, dsn, table string) (int64, error) {
	ident := pgx.Identifier(strings.Split(table, "."))
	side, err := pgx.Connect(ctx, sideDSN)
	if err != nil {
		return 0, fmt.Errorf("connect to the side instance: %w", err)
	}
	defer side.Close(context.Background())
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, fmt.Errorf("connect to the writer endpoint: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", ident.Sanitize()).Scan(&exists); err != nil {
		return 0, err
	}
	if !exists {
		return dumpTable(ctx, side, sideDSN, dsn, table)
	}
	var buf bytes.Buffer
	if _, err := side.PgConn().CopyTo(ctx, &buf, "COPY (SELECT * FROM "+ident.Sanitize()+") TO STDOUT"); err != nil {
		return 0, fmt.Errorf("read the side instance: %w", err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.Background())
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE lifeline_restored (LIKE "+ident.Sanitize()+") ON COMMIT DROP"); err != nil {
		return 0, err
	}
	if _, err := conn.PgConn().CopyFrom(ctx, &buf, "COPY lifeline_restored FROM STDIN"); err != nil {
		return 0, fmt.Errorf("copy into the workload: %w", err)
	}
	tag, err := tx.Exec(ctx, "INSERT INTO "+ident.Sanitize()+" SELECT * FROM lifeline_restored ON CONFLICT DO NOTHING")
	if err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return tag.RowsAffected(), nil
}

// dumpTable recreates a dropped table from the side instance with pg_dump
// and psql, and counts its rows.
func dumpTable(ctx context.Context, side *pgx.Conn, sideDSN, dsn, table string) (int64, error) {
	bin, err := postgres.FindBin()
	if err != nil {
		return 0, err
	}
	dump := exec.CommandContext(ctx, filepath.Join(bin, "pg_dump"), "--table", table, "--no-owner", sideDSN)
	load := exec.CommandContext(ctx, filepath.Join(bin, "psql"), "-v", "ON_ERROR_STOP=1", "-q", dsn)
	pipe, err := dump.StdoutPipe()
	if err != nil {
		return 0, err
	}
	load.Stdin = pipe
	var dumpErr, loadErr bytes.Buffer
	dump.Stderr, load.Stderr = &dumpErr, &loadErr
	if err := dump.Start(); err != nil {
		return 0, err
	}
	loadRunErr := load.Run()
	if err := dump.Wait(); err != nil {
		return 0, fmt.Errorf("pg_dump: %w: %s", err, dumpErr.String())
	}
	if loadRunErr != nil {
		return 0, fmt.Errorf("psql: %w: %s", loadRunErr, loadErr.String())
	}
	var n int64
	err = side.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier(strings.Split(table, ".")).Sanitize()).Scan(&n)
	if err != nil {
		return 0, errors.Join(errors.New("count restored rows"), err)
	}
	return n, nil
}
