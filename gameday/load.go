package gameday

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ack is one acknowledged write: the commit returned without error.
type Ack struct {
	ID int64
	At time.Time
}

// Load writes one row per interval through a connection string (a
// workload's writer endpoint), reconnecting after every failure, and
// records which writes were acknowledged.
type Load struct {
	dsn      string
	table    string
	interval time.Duration

	mu     sync.Mutex
	acks   []Ack
	fails  []time.Time
	cancel context.CancelFunc
	done   chan struct{}
}

// LoadTable is the table the load writes to.
const LoadTable = "lifeline_gameday_load"

// StartLoad creates the load's table and starts writing. It stops when
// Stop is called or ctx ends.
func StartLoad(ctx context.Context, dsn string, interval time.Duration) (*Load, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	_, err = conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+LoadTable+" (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
	var first int64
	if err == nil {
		// A later load on the same database continues the numbering.
		err = conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) + 1 FROM "+LoadTable).Scan(&first)
	}
	conn.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{dsn: dsn, table: LoadTable, interval: interval, cancel: cancel, done: make(chan struct{})}
	go l.run(ctx, first)
	return l, nil
}

func (l *Load) run(ctx context.Context, next int64) {
	defer close(l.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	tick := time.NewTicker(l.interval)
	defer tick.Stop()
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := pgx.Connect(cctx, l.dsn)
			cancel()
			if err != nil {
				l.fail()
				sleep(ctx, l.interval)
				continue
			}
			conn = c
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := conn.Exec(wctx, "INSERT INTO "+l.table+" (id) VALUES ($1)", next)
		cancel()
		if err != nil {
			// Unknown outcome: the id is not reused, and it is not counted
			// as acknowledged; a later check may find it present.
			l.fail()
			conn.Close(context.Background())
			conn = nil
			next++
			continue
		}
		l.mu.Lock()
		l.acks = append(l.acks, Ack{ID: next, At: time.Now()})
		l.mu.Unlock()
		next++
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

func (l *Load) fail() {
	l.mu.Lock()
	l.fails = append(l.fails, time.Now())
	l.mu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// Stop ends the load and returns what was acknowledged.
func (l *Load) Stop() Result {
	l.cancel()
	<-l.done
	return l.Result()
}

// Result is a snapshot of the load so far.
func (l *Load) Result() Result {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Result{Acked: append([]Ack(nil), l.acks...), Failures: append([]time.Time(nil), l.fails...)}
}

// WaitAcksAfter waits until n writes were acknowledged after t.
func (l *Load) WaitAcksAfter(ctx context.Context, t time.Time, n int) error {
	for {
		r := l.Result()
		c := 0
		for _, a := range r.Acked {
			if a.At.After(t) {
				c++
			}
		}
		if c >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d writes acknowledged after %s, want %d: %w", c, t.Format(time.RFC3339Nano), n, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Result is what a load saw.
type Result struct {
	Acked []Ack
	// Failures are the times of failed attempts (connect or write).
	Failures []time.Time
}

// Recovery measures the outage that a fault at t caused, as the client saw
// it: from t to the first acknowledged write after the first failure that
// followed t. ok is false when no write failed after t (no outage seen) or
// none succeeded after the failures.
func (r Result) Recovery(t time.Time) (rto time.Duration, ok bool) {
	var firstFail time.Time
	for _, f := range r.Failures {
		if f.After(t) {
			firstFail = f
			break
		}
	}
	if firstFail.IsZero() {
		return 0, false
	}
	a, ok := r.FirstAckAfter(firstFail)
	if !ok {
		return 0, false
	}
	return a.At.Sub(t), true
}

// MaxPause is the longest gap between two consecutive acknowledged writes
// from the last one before from to the first one after to: the longest a
// client waited for a write across [from, to] (a switchover's pause).
func (r Result) MaxPause(from, to time.Time) time.Duration {
	var prev time.Time
	var worst time.Duration
	for _, a := range r.Acked {
		if a.At.Before(from) {
			prev = a.At
			continue
		}
		if !prev.IsZero() {
			worst = max(worst, a.At.Sub(prev))
		}
		prev = a.At
		if a.At.After(to) {
			break
		}
	}
	return worst
}

// WaitRecovered waits for the outage a fault at t caused (the first failed
// write after t), then for n writes acknowledged after it. Counting from t
// alone is not enough: writes go on until the fault has reached the node.
func (l *Load) WaitRecovered(ctx context.Context, t time.Time, n int) error {
	for {
		for _, f := range l.Result().Failures {
			if f.After(t) {
				return l.WaitAcksAfter(ctx, f, n)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no outage after %s: %w", t.Format(time.RFC3339Nano), ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// FirstAckAfter is the first acknowledged write after t: with t the moment
// of a fault, its time minus t is the RTO a client saw.
func (r Result) FirstAckAfter(t time.Time) (Ack, bool) {
	for _, a := range r.Acked {
		if a.At.After(t) {
			return a, true
		}
	}
	return Ack{}, false
}

// LastAckBefore is the last acknowledged write before t.
func (r Result) LastAckBefore(t time.Time) (Ack, bool) {
	var last Ack
	ok := false
	for _, a := range r.Acked {
		if a.At.Before(t) {
			last, ok = a, true
		}
	}
	return last, ok
}

// Missing returns the acknowledged writes that a database does not hold:
// the writes lost (RPO as a count).
func Missing(ctx context.Context, dsn string, acked []Ack) ([]Ack, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	ids := make([]int64, len(acked))
	for i, a := range acked {
		ids[i] = a.ID
	}
	rows, err := conn.Query(ctx, "SELECT id FROM "+LoadTable+" WHERE id = ANY($1)", ids)
	if err != nil {
		return nil, err
	}
	present := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var missing []Ack
	for _, a := range acked {
		if !present[a.ID] {
			missing = append(missing, a)
		}
	}
	sort.Slice(missing, func(i, j int) bool { return missing[i].ID < missing[j].ID })
	return missing, nil
}
