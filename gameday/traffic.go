package gameday

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// target is where the load goes: the global HTTP entry point or the
// writer endpoint. Write and Read make one attempt each.
type target interface {
	write(ctx context.Context, w *worker, id string) Attempt
	read(ctx context.Context, w *worker) Attempt
	// present lists the ids with the prefix that the database holds.
	present(ctx context.Context, prefix string) ([]string, error)
	close()
}

// worker is one concurrent client; it keeps its own connection.
type worker struct {
	conn *pgx.Conn
}

// Traffic runs a load against a target and records every attempt.
type Traffic struct {
	spec   LoadSpec
	target target
	prefix string
	Ledger *Ledger
	seq    atomic.Int64
	// Missed counts the ticks no worker was free for.
	missed atomic.Int64
}

// isWrite spreads writes evenly over the requests by their weights.
func isWrite(i int64, writes, reads int) bool {
	total := int64(writes + reads)
	if total == 0 {
		return true
	}
	return (i+1)*int64(writes)/total > i*int64(writes)/total
}

// Run sends requests at the spec's rate with its concurrency until ctx
// ends; an attempt in flight is given its timeout to finish.
func (t *Traffic) Run(ctx context.Context) {
	ticks := make(chan int64, t.spec.Concurrency)
	var wg sync.WaitGroup
	for range t.spec.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &worker{}
			defer func() {
				if w.conn != nil {
					w.conn.Close(context.Background())
				}
			}()
			for i := range ticks {
				// The attempt is not cut short when the load ends.
				actx, cancel := context.WithTimeout(context.Background(), t.spec.Timeout)
				var a Attempt
				if isWrite(i, t.spec.Writes, t.spec.Reads) {
					a = t.target.write(actx, w, fmt.Sprintf("%s-%06d", t.prefix, i))
				} else {
					a = t.target.read(actx, w)
				}
				cancel()
				t.Ledger.Add(a)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / t.spec.Rate)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-timer.C:
		}
		select {
		case ticks <- t.seq.Add(1) - 1:
		default:
			t.missed.Add(1)
		}
		next = next.Add(interval)
		if d := time.Until(next); d > 0 {
			timer.Reset(d)
		} else {
			next = time.Now()
			timer.Reset(0)
		}
	}
	close(ticks)
	wg.Wait()
}

// Missed is the number of requests not sent because every worker was busy.
func (t *Traffic) Missed() int64 { return t.missed.Load() }

// httpTarget posts orders to the example app through the global HTTP
// entry point: POST /orders {"id": ID} writes, GET /orders/count reads.
// The app answers with the instance and region that served. The ids are
// checked in its table through the writer endpoint.
type httpTarget struct {
	base, host string
	client     *http.Client
	dsn        string
}

// The example app's table and the column holding the request id.
const (
	appTable  = "example_orders"
	appColumn = "request"
)

func newHTTPTarget(addr, host, dsn string, spec LoadSpec) *httpTarget {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: spec.Timeout}).DialContext,
		MaxIdleConnsPerHost: spec.Concurrency,
		DisableCompression:  true,
	}
	return &httpTarget{base: "http://" + addr, host: host, dsn: dsn, client: &http.Client{Transport: tr}}
}

func (h *httpTarget) close() { h.client.CloseIdleConnections() }

type appReply struct {
	Instance string `json:"instance"`
	Region   string `json:"region"`
	Error    string `json:"error"`
}

func (h *httpTarget) do(ctx context.Context, a Attempt, method, path string, body []byte) Attempt {
	req, err := http.NewRequestWithContext(ctx, method, h.base+path, bytes.NewReader(body))
	if err != nil {
		return finish(a, Failed, err)
	}
	req.Host = h.host
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "dial" {
			return finish(a, Failed, err) // never sent
		}
		return finish(a, Unknown, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	var r appReply
	_ = json.Unmarshal(b, &r)
	a.Instance, a.Region = r.Instance, r.Region
	switch {
	case err != nil:
		return finish(a, Unknown, err)
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return finish(a, OK, nil)
	case resp.StatusCode >= 400 && resp.StatusCode < 500:
		return finish(a, Failed, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(r.Error)))
	default:
		// A server error may come after the write committed.
		return finish(a, Unknown, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(firstLine(r.Error, b))))
	}
}

func firstLine(msg string, body []byte) string {
	if msg != "" {
		return msg
	}
	s, _, _ := strings.Cut(string(body), "\n")
	return s
}

func finish(a Attempt, o Outcome, err error) Attempt {
	a.End, a.Outcome = time.Now(), o
	if err != nil {
		a.Error = err.Error()
	}
	return a
}

func (h *httpTarget) write(ctx context.Context, _ *worker, id string) Attempt {
	body, _ := json.Marshal(map[string]string{"id": id})
	return h.do(ctx, Attempt{ID: id, Op: OpWrite, Start: time.Now()}, http.MethodPost, "/orders", body)
}

func (h *httpTarget) read(ctx context.Context, _ *worker) Attempt {
	return h.do(ctx, Attempt{Op: OpRead, Start: time.Now()}, http.MethodGet, "/orders/count", nil)
}

func (h *httpTarget) present(ctx context.Context, prefix string) ([]string, error) {
	return presentIDs(ctx, h.dsn, appTable, appColumn, prefix)
}

// presentIDs reads the ids with a prefix from a table.
func presentIDs(ctx context.Context, dsn, table, column, prefix string) ([]string, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, fmt.Sprintf("SELECT %[1]s FROM %[2]s WHERE left(%[1]s, $2) = $1",
		pgx.Identifier{column}.Sanitize(), pgx.Identifier{table}.Sanitize()), prefix+"-", len(prefix)+1)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// writerTarget inserts rows through the writer endpoint.
type writerTarget struct {
	dsn string
	// nodes maps a server address to its node ("eu-west/a").
	nodes map[string]string
}

// LedgerTable is the table the writer-endpoint load writes to.
const LedgerTable = "lifeline_gameday_ledger"

func newWriterTarget(ctx context.Context, dsn string, nodes map[string]string) (*writerTarget, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connect to the writer endpoint: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+LedgerTable+" (id text PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return nil, fmt.Errorf("create %s: %w", LedgerTable, err)
	}
	return &writerTarget{dsn: dsn, nodes: nodes}, nil
}

func (wt *writerTarget) close() {}

func (wt *writerTarget) exec(ctx context.Context, w *worker, a Attempt, sql string, args ...any) Attempt {
	if w.conn == nil {
		c, err := pgx.Connect(ctx, wt.dsn)
		if err != nil {
			return finish(a, Failed, err)
		}
		w.conn = c
	}
	var addr string
	var n int64
	err := w.conn.QueryRow(ctx, sql, args...).Scan(&addr, &n)
	if err != nil {
		w.conn.Close(context.Background())
		w.conn = nil
		return finish(a, classifySQL(err), err)
	}
	a.Instance = wt.nodes[addr]
	if a.Instance == "" {
		a.Instance = addr
	}
	a.Region, _, _ = strings.Cut(a.Instance, "/")
	return finish(a, OK, nil)
}

// classifySQL: an error before the statement was sent, or a statement the
// server rejected, is a definite failure; anything else may have committed.
func classifySQL(err error) Outcome {
	if pgconn.SafeToRetry(err) {
		return Failed
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code[:2] {
		case "08", "57", "58", "XX", "53":
			return Unknown // connection, shutdown, system errors
		}
		return Failed // rejected: read-only, constraint, syntax
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return Failed
	}
	return Unknown
}

func (wt *writerTarget) write(ctx context.Context, w *worker, id string) Attempt {
	return wt.exec(ctx, w, Attempt{ID: id, Op: OpWrite, Start: time.Now()},
		"INSERT INTO "+LedgerTable+" (id) VALUES ($1) RETURNING host(inet_server_addr()), 1::bigint", id)
}

func (wt *writerTarget) read(ctx context.Context, w *worker) Attempt {
	return wt.exec(ctx, w, Attempt{Op: OpRead, Start: time.Now()},
		"SELECT host(inet_server_addr()), count(*) FROM "+LedgerTable+" WHERE at > now() - interval '1 second'")
}

func (wt *writerTarget) present(ctx context.Context, prefix string) ([]string, error) {
	return presentIDs(ctx, wt.dsn, LedgerTable, "id", prefix)
}
