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
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Config is taken from flags and the environment the agent sets.
type Config struct {
	Listen string
	// Database is a connection string for the writer endpoint; empty runs
	// without a database (GET / and /healthz only).
	Database string
	Instance string
	Log      *slog.Logger
}

// Run serves until ctx ends, then drains for up to 5s.
func Run(ctx context.Context, cfg Config) error {
	a := &app{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /{$}", a.hello)
	mux.HandleFunc("POST /orders", a.order)
	mux.HandleFunc("GET /orders/count", a.count)
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
	cfg  Config
	once sync.Once
	pool *pgxpool.Pool
	err  error
}

func (a *app) db(ctx context.Context) (*pgxpool.Pool, error) {
	if a.cfg.Database == "" {
		return nil, errors.New("no database configured")
	}
	a.once.Do(func() {
		a.pool, a.err = pgxpool.New(context.Background(), a.cfg.Database)
		if a.err == nil {
			// request is the client's id for the order (game days send one
			// with every write and look for it after a failover).
			_, a.err = a.pool.Exec(ctx, "CREATE TABLE IF NOT EXISTS example_orders (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now(), instance text, request text UNIQUE);"+
				"ALTER TABLE example_orders ADD COLUMN IF NOT EXISTS request text UNIQUE")
		}
	})
	return a.pool, a.err
}

func (a *app) close() {
	if a.pool != nil {
		a.pool.Close()
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
