// Package app is the example service that the example specs run
// (`lifeline example-app --listen {addr}`): a small HTTP API whose writes go
// through the workload's writer endpoint, so a failover is visible to it
// exactly as to a real client.
package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is taken from flags and the environment the agent sets.
type Config struct {
	Listen string
	// Database is a connection string for the writer endpoint; empty runs
	// without a database (GET / and /healthz only). Reader is one for the
	// reader endpoint (reads of one order); empty reads through Database.
	Database string
	Reader   string
	Instance string
	Log      *slog.Logger
}

// Run serves until ctx ends, then drains for up to 5s.
func Run(ctx context.Context, cfg Config) error {
	a := &app{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /{$}", a.hello)
	mux.HandleFunc("POST /orders", a.order)
	mux.HandleFunc("GET /orders/count", a.count)
	mux.HandleFunc("GET /orders/{id}", a.get)
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("example app: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	cfg.Log.Info("example app listening", "addr", cfg.Listen, "instance", cfg.Instance)
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	a.close()
	return nil
}

type app struct {
	cfg Config

	mu     sync.Mutex
	pool   *pgxpool.Pool // writer endpoint
	reader *pgxpool.Pool // reader endpoint
	ready  bool          // the table exists

	// Apart from mu, which a slow database call can hold: the probe
	// never waits for it.
	hmu      sync.Mutex
	dbHealth string // the last database check's outcome ("ok" or the error)
	checking bool   // a database check runs
}

// db returns the writer pool with the table in place. A failure (the
// writer endpoint refusing during a failover) is this request's: the next
// request tries again.
func (a *app) db(ctx context.Context) (*pgxpool.Pool, error) {
	if a.cfg.Database == "" {
		return nil, errors.New("no database configured")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pool == nil {
		p, err := pgxpool.New(context.Background(), a.cfg.Database)
		if err != nil {
			return nil, err
		}
		a.pool = p
	}
	if !a.ready {
		// request is the client's id for the order (game days send one
		// with every write and look for it after a failover).
		if _, err := a.pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS example_orders (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), instance text, request text UNIQUE);"+
			"ALTER TABLE example_orders ADD COLUMN IF NOT EXISTS request text UNIQUE"); err != nil {
			return nil, err
		}
		a.ready = true
	}
	return a.pool, nil
}

// readDB is the reader endpoint's pool (the writer's when none is set).
func (a *app) readDB(ctx context.Context) (*pgxpool.Pool, error) {
	if a.cfg.Reader == "" {
		return a.db(ctx)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.reader == nil {
		p, err := pgxpool.New(context.Background(), a.cfg.Reader)
		if err != nil {
			return nil, err
		}
		a.reader = p
	}
	return a.reader, nil
}

func (a *app) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range []*pgxpool.Pool{a.pool, a.reader} {
		if p != nil {
			p.Close()
		}
	}
}

// healthz answers 200 while the process serves, at once; its body says
// how the database answered the last check. The check runs in the
// background (one at a time): while the writer endpoint holds connections
// during a failover, a probe that waited for the database would time out
// and take a live instance out of rotation. The instance stays in rotation
// during a failover, so that it takes writes again the moment the writer
// endpoint does.
func (a *app) healthz(w http.ResponseWriter, r *http.Request) {
	out := map[string]any{"ok": true, "instance": a.cfg.Instance, "database": "none configured"}
	if a.cfg.Database != "" {
		out["database"] = a.databaseHealth()
	}
	reply(w, http.StatusOK, out)
}

// databaseHealth returns the outcome of the last database check and starts
// another unless one runs.
func (a *app) databaseHealth() string {
	a.hmu.Lock()
	last, running := a.dbHealth, a.checking
	if !running {
		a.checking = true
	}
	a.hmu.Unlock()
	if !running {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			pool, err := a.db(ctx)
			if err == nil {
				err = pool.Ping(ctx)
			}
			state := "ok"
			if err != nil {
				state = err.Error()
			}
			a.hmu.Lock()
			a.dbHealth, a.checking = state, false
			a.hmu.Unlock()
		}()
	}
	if last == "" {
		return "not checked yet"
	}
	return last
}

// get reads one order through the reader endpoint.
func (a *app) get(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		reply(w, http.StatusBadRequest, map[string]string{"error": "the order id is a number"})
		return
	}
	pool, err := a.readDB(ctx)
	if err != nil {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	var at time.Time
	var instance string
	err = pool.QueryRow(ctx, "SELECT at, coalesce(instance, '') FROM example_orders WHERE id = $1", id).Scan(&at, &instance)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		reply(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no order %d (the reader may be up to the RPO behind)", id)})
	case err != nil:
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		reply(w, http.StatusOK, map[string]any{"id": id, "at": at, "written_by": instance, "instance": a.cfg.Instance})
	}
}

func (a *app) hello(w http.ResponseWriter, r *http.Request) {
	host, _ := os.Hostname()
	reply(w, http.StatusOK, map[string]any{
		"instance": a.cfg.Instance, "region": os.Getenv("LIFELINE_REGION"), "zone": os.Getenv("LIFELINE_ZONE"),
		"host": host, "time": time.Now().UTC(), "forwarded_for": r.Header.Get("X-Forwarded-For"),
	})
}

func (a *app) order(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	pool, err := a.db(ctx)
	if err != nil {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	// An optional {"id": "..."} names the order: the same id twice is one order.
	var in struct {
		ID string `json:"id"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&in); err != nil && !errors.Is(err, io.EOF) {
			reply(w, http.StatusBadRequest, map[string]string{"error": "want {\"id\": \"...\"} or no body: " + err.Error()})
			return
		}
	}
	var request *string
	if in.ID != "" {
		request = &in.ID
	}
	var id int64
	if err := pool.QueryRow(ctx, "INSERT INTO example_orders (instance, request) VALUES ($1, $2) ON CONFLICT (request) DO UPDATE SET request = EXCLUDED.request RETURNING id", a.cfg.Instance, request).Scan(&id); err != nil {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error(), "instance": a.cfg.Instance, "region": os.Getenv("LIFELINE_REGION")})
		return
	}
	reply(w, http.StatusCreated, map[string]any{"id": id, "request": in.ID, "instance": a.cfg.Instance, "region": os.Getenv("LIFELINE_REGION")})
}

func (a *app) count(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	pool, err := a.db(ctx)
	if err != nil {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	var n int64
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM example_orders").Scan(&n); err != nil {
		reply(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	reply(w, http.StatusOK, map[string]any{"count": n, "instance": a.cfg.Instance, "region": os.Getenv("LIFELINE_REGION")})
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
