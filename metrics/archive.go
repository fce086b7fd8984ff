package metrics

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/lifeline-dr/lifeline"
)

// Archive exports the WAL archiving of the agent's own PostgreSQL, read
// from pg_stat_archiver at each scrape (one short connection per
// workload, bounded by Timeout).
type Archive struct {
	T    *lifeline.Topology
	Node lifeline.NodeID
	// Connect opens a connection to this node's database of a workload.
	Connect func(ctx context.Context, w *lifeline.Workload, id lifeline.NodeID) (*pgx.Conn, error)
	// Timeout bounds each workload's read; 2 s when zero.
	Timeout time.Duration
}

var _ prometheus.Collector = (*Archive)(nil)

var (
	dPGUp         = desc("lifeline_postgres_up", "1 when this node's PostgreSQL answered the scrape's query, else 0.", "workload", "node")
	dArchived     = desc("lifeline_wal_archived_total", "WAL files archived by this node's PostgreSQL since its statistics were reset (pg_stat_archiver).", "workload", "node")
	dArchFailed   = desc("lifeline_wal_archive_failures_total", "Failed attempts to archive WAL files (pg_stat_archiver).", "workload", "node")
	dLastArchived = desc("lifeline_wal_last_archived_timestamp_seconds", "When the last WAL file was archived.", "workload", "node")
	dArchLag      = desc("lifeline_wal_archive_lag_bytes", "WAL written by the primary and not archived yet: its position less the end of the last segment archived (the segment being written included).", "workload", "node")
)

// Describe implements prometheus.Collector.
func (a *Archive) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dPGUp, dArchived, dArchFailed, dLastArchived, dArchLag} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (a *Archive) Collect(ch chan<- prometheus.Metric) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	node := a.Node.String()
	for i := range a.T.Workloads {
		w := &a.T.Workloads[i]
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		st, err := a.read(ctx, w)
		cancel()
		gauge(ch, dPGUp, b2f(err == nil), w.Name, node)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(dArchived, prometheus.CounterValue, float64(st.archived), w.Name, node)
		ch <- prometheus.MustNewConstMetric(dArchFailed, prometheus.CounterValue, float64(st.failed), w.Name, node)
		if st.lastAt > 0 {
			gauge(ch, dLastArchived, st.lastAt, w.Name, node)
		}
		if st.current != "" {
			if lag, ok := ArchiveLag(st.current, st.lastWAL); ok {
				gauge(ch, dArchLag, float64(lag), w.Name, node)
			}
		}
	}
}

type archiverStats struct {
	archived, failed int64
	lastWAL          string
	lastAt           float64
	current          string // the primary's position; "" on a standby
}

func (a *Archive) read(ctx context.Context, w *lifeline.Workload) (archiverStats, error) {
	var st archiverStats
	conn, err := a.Connect(ctx, w, a.Node)
	if err != nil {
		return st, err
	}
	defer conn.Close(context.Background())
	err = conn.QueryRow(ctx, `SELECT archived_count, failed_count, coalesce(last_archived_wal, ''),
		coalesce(extract(epoch FROM last_archived_time)::float8, 0),
		CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_current_wal_lsn()::text END
		FROM pg_stat_archiver`).Scan(&st.archived, &st.failed, &st.lastWAL, &st.lastAt, &st.current)
	return st, err
}

// WALSegmentSize is PostgreSQL's default segment size (Lifeline's
// clusters are made with it).
const WALSegmentSize = 16 << 20

// ArchiveLag is how many bytes of WAL up to current (an LSN) lie past the
// end of the segment lastWAL names (a 24-hex-digit segment file name);
// ok is false when either cannot be read. Nothing archived yet counts
// from the start of the WAL.
func ArchiveLag(current, lastWAL string) (int64, bool) {
	cur, err := lifeline.ParseLSN(current)
	if err != nil {
		return 0, false
	}
	var end uint64
	if lastWAL != "" {
		if len(lastWAL) != 24 {
			return 0, false // a history or backup label file: unknown
		}
		log, err1 := strconv.ParseUint(lastWAL[8:16], 16, 32)
		seg, err2 := strconv.ParseUint(lastWAL[16:24], 16, 32)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		end = log<<32 + (seg+1)*WALSegmentSize
	}
	if uint64(cur) <= end {
		return 0, true
	}
	return int64(uint64(cur) - end), true
}
