package gameday

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// WriterWatch samples which nodes accept writes (answer, and are not in
// recovery), to prove that two never do at once.
type WriterWatch struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	rounds int
	max    int
	first  map[string]time.Time
	last   map[string]time.Time
	both   []string // descriptions of rounds with more than one writer
}

// WatchWriters starts sampling the nodes (name → connection string) every interval.
func WatchWriters(ctx context.Context, nodes map[string]string, every time.Duration) *WriterWatch {
	ctx, cancel := context.WithCancel(ctx)
	w := &WriterWatch{cancel: cancel, done: make(chan struct{}), first: map[string]time.Time{}, last: map[string]time.Time{}}
	go w.run(ctx, nodes, every)
	return w
}

func (w *WriterWatch) run(ctx context.Context, nodes map[string]string, every time.Duration) {
	defer close(w.done)
	conns := map[string]*pgx.Conn{}
	defer func() {
		for _, c := range conns {
			c.Close(context.Background())
		}
	}()
	var mu sync.Mutex
	for ctx.Err() == nil {
		writable := map[string]time.Time{}
		var wg sync.WaitGroup
		for name, dsn := range nodes {
			mu.Lock()
			c := conns[name]
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				qctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
				defer cancel()
				if c == nil {
					var err error
					if c, err = pgx.Connect(qctx, dsn); err != nil {
						return
					}
					mu.Lock()
					conns[name] = c
					mu.Unlock()
				}
				var rec bool
				if err := c.QueryRow(qctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
					c.Close(context.Background())
					mu.Lock()
					delete(conns, name)
					mu.Unlock()
					return
				}
				if !rec {
					mu.Lock()
					writable[name] = time.Now()
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		w.mu.Lock()
		w.rounds++
		if len(writable) > w.max {
			w.max = len(writable)
		}
		for n, at := range writable {
			if _, ok := w.first[n]; !ok {
				w.first[n] = at
			}
			w.last[n] = at
		}
		if len(writable) > 1 {
			desc := ""
			for n := range writable {
				desc += n + " "
			}
			w.both = append(w.both, time.Now().Format("15:04:05.000")+": "+desc)
		}
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(every):
		}
	}
}

// WriterReport is what a WriterWatch saw.
type WriterReport struct {
	Rounds      int
	MaxWritable int
	// Overlaps lists the rounds in which more than one node was writable.
	Overlaps []string
	// First and Last are when each node was first and last seen writable.
	First map[string]time.Time
	Last  map[string]time.Time
}

// Stop ends sampling.
func (w *WriterWatch) Stop() WriterReport {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return WriterReport{Rounds: w.rounds, MaxWritable: w.max, Overlaps: w.both, First: w.first, Last: w.last}
}
