package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/lifeline-dr/lifeline"
)

// Status is what the server says about itself.
type Status struct {
	InRecovery bool
	// LSN is the current WAL position on a primary and the replay position
	// on a standby.
	LSN        lifeline.LSN
	ReceiveLSN lifeline.LSN
	Timeline   int64
	// Upstream is the standby's WAL receiver state ("streaming", or "" when
	// it is not connected).
	Upstream string
	Replicas []lifeline.ReplicaStatus
}

// Status queries the server's role, WAL positions and replication.
func (i *Instance) Status(ctx context.Context) (Status, error) {
	conn, err := i.Connect(ctx)
	if err != nil {
		return Status{}, err
	}
	defer conn.Close(context.Background())
	var st Status
	var lsn, recv *string
	var tli *int64
	err = conn.QueryRow(ctx, `
		SELECT pg_is_in_recovery(),
		       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text ELSE pg_current_wal_lsn()::text END,
		       pg_last_wal_receive_lsn()::text,
		       CASE WHEN pg_is_in_recovery()
		            THEN coalesce((SELECT received_tli FROM pg_stat_wal_receiver), (SELECT timeline_id FROM pg_control_checkpoint()))
		            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END`).
		Scan(&st.InRecovery, &lsn, &recv, &tli)
	if err != nil {
		return Status{}, fmt.Errorf("status %s: %w", i.cfg.Name, err)
	}
	if lsn != nil {
		st.LSN, _ = lifeline.ParseLSN(*lsn)
	}
	if recv != nil {
		st.ReceiveLSN, _ = lifeline.ParseLSN(*recv)
	}
	if tli != nil {
		st.Timeline = *tli
	}
	if st.InRecovery {
		_ = conn.QueryRow(ctx, `SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), '')`).Scan(&st.Upstream)
		return st, nil
	}
	rows, err := conn.Query(ctx, `
		SELECT application_name, state, sync_state,
		       coalesce(sent_lsn::text, ''), coalesce(flush_lsn::text, ''), coalesce(replay_lsn::text, ''),
		       coalesce(extract(epoch FROM replay_lag), 0)::float8
		FROM pg_stat_replication ORDER BY application_name`)
	if err != nil {
		return Status{}, fmt.Errorf("status %s: replication: %w", i.cfg.Name, err)
	}
	for rows.Next() {
		var r lifeline.ReplicaStatus
		if err := rows.Scan(&r.Name, &r.State, &r.SyncState, &r.SentLSN, &r.FlushLSN, &r.ReplayLSN, &r.ReplayLag); err != nil {
			return Status{}, fmt.Errorf("status %s: replication: %w", i.cfg.Name, err)
		}
		r.Connected = true
		if replay, err := lifeline.ParseLSN(r.ReplayLSN); err == nil {
			r.LagBytes = st.LSN.Sub(replay)
		}
		st.Replicas = append(st.Replicas, r)
	}
	return st, rows.Err()
}

// EnsureRoles creates or updates the roles Lifeline needs besides the
// superuser: the one standbys connect as, and the workload's services' own
// (when AppRole is set). Passwords are sent as SCRAM verifiers, so that
// none appears in the server's statement log or activity view.
func (i *Instance) EnsureRoles(ctx context.Context) error {
	conn, err := i.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if err := ensureRole(ctx, conn, i.cfg.ReplicationUser, "REPLICATION LOGIN", i.cfg.ReplicationPassword); err != nil {
		return fmt.Errorf("replication user on %s: %w", i.cfg.Name, err)
	}
	if i.cfg.AppRole == "" {
		return nil
	}
	// The services' role: no superuser, no replication, no role or
	// database creation; its tables go to a schema of its own, first on
	// its search_path ("$user").
	if err := ensureRole(ctx, conn, i.cfg.AppRole, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION", i.cfg.AppPassword); err != nil {
		return fmt.Errorf("services' role on %s: %w", i.cfg.Name, err)
	}
	role := pgx.Identifier{i.cfg.AppRole}.Sanitize()
	if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION %s", role, role)); err != nil {
		return fmt.Errorf("services' schema on %s: %w", i.cfg.Name, err)
	}
	return nil
}

// ensureRole creates role, or brings an existing one to attrs and password.
func ensureRole(ctx context.Context, conn *pgx.Conn, name, attrs, password string) error {
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return err
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	stmt := fmt.Sprintf("%s ROLE %s WITH %s", verb, pgx.Identifier{name}.Sanitize(), attrs)
	if password != "" {
		v, err := scramVerifier(password)
		if err != nil {
			return err
		}
		stmt += " PASSWORD " + quoteLiteral(v)
	}
	_, err := conn.Exec(ctx, stmt)
	return err
}

// EnsureSlots creates a physical replication slot for each name that lacks one.
func (i *Instance) EnsureSlots(ctx context.Context, names []string) error {
	conn, err := i.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	// On a standby the slots wait for its promotion (or a cascading
	// standby) without reserving WAL; on a primary they reserve it at once.
	for _, n := range names {
		_, err := conn.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, NOT pg_is_in_recovery())
			WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, n)
		if err != nil {
			return fmt.Errorf("slot %s on %s: %w", n, i.cfg.Name, err)
		}
	}
	return nil
}

// Promote ends recovery and waits until the server accepts writes.
//
// The request goes by `pg_ctl promote`, a signal, rather than pg_promote():
// a new connection costs a backend's start, which is on the failover's path.
// The wait then polls on a connection opened meanwhile, every 10 ms
// (pg_promote polls every 100 ms).
func (i *Instance) Promote(ctx context.Context) error {
	type dialed struct {
		conn *pgx.Conn
		err  error
	}
	c := make(chan dialed, 1)
	go func() {
		conn, err := i.Connect(ctx)
		c <- dialed{conn, err}
	}()
	perr := i.run(ctx, nil, "pg_ctl", "promote", "-W", "-D", i.DataDir())
	if perr == nil {
		// The retry sleep (see promotionStep) can begin before the
		// connection below is up, which under load takes a few hundred
		// ms. A reload a moment after the request usually ends it unseen;
		// one that comes too early is absorbed, and the wait below sends
		// another when it sees the sleep.
		time.AfterFunc(30*time.Millisecond, func() { _ = i.Reload() })
	}
	d := <-c
	if d.err != nil {
		// The request may be under way: a failed connection must not
		// leave a server promoted behind an error, so try once more.
		if d.conn, d.err = i.Connect(ctx); d.err != nil {
			return fmt.Errorf("promote %s: %w", i.cfg.Name, d.err)
		}
	}
	defer d.conn.Close(context.Background())
	deadline := time.Now().Add(60 * time.Second)
	var woken time.Time
	for {
		done, err := i.promotionStep(ctx, d.conn, &woken)
		if err != nil {
			return fmt.Errorf("promote %s: %w", i.cfg.Name, err)
		}
		if done {
			return nil // also when pg_ctl failed because an earlier request had done it
		}
		if perr != nil {
			return fmt.Errorf("promote %s: %w", i.cfg.Name, perr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("promote %s: still in recovery after 60s", i.cfg.Name)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("promote %s: %w", i.cfg.Name, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// promotionStep reports whether recovery has ended, and wakes the startup
// process when it sleeps between attempts to get WAL.
//
// A standby whose upstream just failed notices a promotion request, then
// sleeps out the rest of wal_retrieve_retry_interval before it ends
// recovery, when the request came while a new attempt was starting
// (PostgreSQL 15, WaitForWALToBecomeAvailable): up to that long added to a
// failover. A reload signal sets the latch that sleep waits on; woken
// spaces the signals out.
func (i *Instance) promotionStep(ctx context.Context, conn *pgx.Conn, woken *time.Time) (bool, error) {
	var inRecovery, sleeping bool
	err := conn.QueryRow(ctx, `SELECT pg_is_in_recovery(), EXISTS (SELECT 1 FROM pg_stat_activity
		WHERE backend_type = 'startup' AND wait_event = 'RecoveryRetrieveRetryInterval')`).Scan(&inRecovery, &sleeping)
	if err != nil || !inRecovery {
		return err == nil, err
	}
	if sleeping && time.Since(*woken) > 100*time.Millisecond {
		*woken = time.Now()
		return false, i.Reload()
	}
	return false, nil
}

// Checkpoint forces a checkpoint (a promoted server's timeline then shows in
// pg_control, which pg_rewind reads).
func (i *Instance) Checkpoint(ctx context.Context) error {
	conn, err := i.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return err
}

// WaitReplay waits until a standby has replayed up to lsn.
func (i *Instance) WaitReplay(ctx context.Context, lsn lifeline.LSN) error {
	for {
		st, err := i.Status(ctx)
		if err == nil && st.LSN >= lsn {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s to replay %s: %w", i.cfg.Name, lsn, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// SyncStandbyNames renders synchronous_standby_names for a quorum rule
// ("ANY 1") over application names.
func SyncStandbyNames(rule string, names []string) string {
	if rule == "" || len(names) == 0 {
		return ""
	}
	s := rule + " ("
	for n, name := range names {
		if n > 0 {
			s += ", "
		}
		s += strconv.Quote(name)
	}
	return s + ")"
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
