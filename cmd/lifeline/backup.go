package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/status"
	"github.com/lifeline-dr/lifeline/store"
)

// backupEnv is what the backup commands share: the topology, the store and
// a controller.Backups that dials nodes directly (the operator's machine).
type backupEnv struct {
	t       *lifeline.Topology
	s       *store.Store
	w       *lifeline.Workload
	b       *controller.Backups
	dataDir string
}

func openBackupEnv(dataDir, workload string) (*backupEnv, error) {
	bin, err := postgres.FindBin()
	if err != nil {
		return nil, err
	}
	owner, err := postgres.ResolveOwner("")
	if err != nil {
		return nil, err
	}
	t, s, err := openStore(dataDir)
	if err != nil {
		return nil, err
	}
	w, err := pickWorkload(t, workload)
	if err != nil {
		s.Close()
		return nil, err
	}
	abs, _ := filepath.Abs(dataDir)
	sec, err := agent.LoadSecurity(t, abs, certs.Operator)
	if err != nil {
		s.Close()
		return nil, err
	}
	return &backupEnv{t: t, s: s, w: w, dataDir: abs, b: &controller.Backups{
		T: t, S: s, DataDir: abs, PGBin: bin, Owner: owner,
		HostPort: func(h string, p int) (string, int) { return h, p },
		Client:   sec.DatabaseClient,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}}, nil
}

func pickWorkload(t *lifeline.Topology, name string) (*lifeline.Workload, error) {
	if name != "" {
		return t.Workload(name)
	}
	if len(t.Workloads) != 1 {
		return nil, fmt.Errorf("the topology has %d workloads: choose one with --workload", len(t.Workloads))
	}
	return &t.Workloads[0], nil
}

// region is the region whose repository a command reads: the one given, or
// the active region (as the workload's state says; an error when it cannot
// be read, never the spec's guess).
func (e *backupEnv) region(ctx context.Context, given string) (string, error) {
	if given != "" {
		_, err := e.t.Region(given)
		return given, err
	}
	st, _, found, err := e.s.State(ctx, e.w.Name)
	if err != nil {
		return "", fmt.Errorf("the active region of %s cannot be read (give --region): %w", e.w.Name, err)
	}
	if !found {
		return "", fmt.Errorf("%s: %w (give --region)", e.w.Name, store.ErrNoState)
	}
	return st.Active, nil
}

// repo opens the repository of a region (the primary's when region is "").
func (e *backupEnv) repo(ctx context.Context, region string) (*backup.Repo, string, error) {
	r, err := e.region(ctx, region)
	if err != nil {
		return nil, "", err
	}
	repo, err := backup.OpenRegion(ctx, e.w, r, e.dataDir)
	return repo, r, err
}

func newBackup() *cobra.Command {
	var dataDir, workload, region string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "backup now|list|info|verify",
		Short: "Take, list, inspect and verify base backups",
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.PersistentFlags().StringVar(&workload, "workload", "", "workload (default: the only one)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")
	printJSON := func(out io.Writer, v any) error {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}

	now := &cobra.Command{
		Use:   "now",
		Short: "Take a full base backup now (from a standby of the primary's region when one is healthy)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := openBackupEnv(dataDir, workload)
			if err != nil {
				return err
			}
			defer e.s.Close()
			ctx := cmd.Context()
			progress, done := progressFor(cmd.ErrOrStderr(), estimateSize(ctx, e))
			info, err := e.b.Now(ctx, e.w, progress)
			done()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s of %s from %s: %s in %.1fs (%.1f MB/s), WAL %s..%s\n",
				info.ID, e.w.Name, info.Node, mb(info.Bytes), info.Duration.Seconds(), float64(info.Bytes)/1e6/info.Duration.Seconds(), info.StartWAL, info.StopWAL)
			return nil
		},
	}

	list := &cobra.Command{
		Use:   "list",
		Short: "List the backups in a region's repository",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := openBackupEnv(dataDir, workload)
			if err != nil {
				return err
			}
			defer e.s.Close()
			ctx := cmd.Context()
			repo, r, err := e.repo(ctx, region)
			if err != nil {
				return err
			}
			defer repo.Close()
			infos, err := repo.List(ctx)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), infos)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "repository %s (%s)\n", repo, r)
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tFROM\tSTARTED\tSECONDS\tSIZE\tSTORED\tTIMELINE\tSTART LSN\tSTOP LSN")
			for _, i := range infos {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f\t%s\t%s\t%d\t%s\t%s\n", i.ID, i.Node, i.StartTime.Local().Format("2006-01-02 15:04:05"),
					i.Duration.Seconds(), mb(i.Bytes), mb(i.StoredBytes), i.Timeline, i.StartLSN, i.StopLSN)
			}
			if len(infos) == 0 {
				fmt.Fprintln(tw, "(no backups yet: lifeline backup now)")
			}
			return tw.Flush()
		},
	}

	info := &cobra.Command{
		Use:   "info ID",
		Short: "Show one backup's manifest",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := openBackupEnv(dataDir, workload)
			if err != nil {
				return err
			}
			defer e.s.Close()
			ctx := cmd.Context()
			repo, _, err := e.repo(ctx, region)
			if err != nil {
				return err
			}
			defer repo.Close()
			i, err := repo.Info(ctx, args[0])
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), i)
		},
	}

	verify := &cobra.Command{
		Use:   "verify",
		Short: "Restore the latest backup into a scratch directory, start it and check it (amcheck, row counts)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			e, err := openBackupEnv(dataDir, workload)
			if err != nil {
				return err
			}
			defer e.s.Close()
			ctx := cmd.Context()
			r, err := e.region(ctx, region)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "verifying the latest backup of %s in %s...\n", e.w.Name, r)
			res, err := e.b.Verify(ctx, e.w, r)
			if asJSON && res != nil {
				_ = printJSON(cmd.OutOrStdout(), res)
			} else if res != nil {
				verdict := "PASS"
				if !res.Passed {
					verdict = "FAIL: " + res.Failure
				}
				backupID := "-"
				if res.Restore != nil {
					backupID = res.Restore.Backup.ID
				}
				rows := int64(0)
				for _, t := range res.Tables {
					rows += t.Rows
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: backup %s restored in %.1fs, recovered in %.1fs, %.1fs in all (RTO %s: %s); amcheck on %d indexes; %d tables, %d rows\n",
					verdict, backupID, res.RestoreSeconds, res.RecoverySeconds, res.TotalSeconds, e.w.Objectives.RTO, withinWord(res.TotalSeconds, e.w.Objectives.RTO), res.Indexes, len(res.Tables), rows)
			}
			if err != nil {
				return err
			}
			if !res.Passed {
				return &exitError{code: 1, err: fmt.Errorf("verification failed: %s", res.Failure)}
			}
			return nil
		},
	}
	for _, c := range []*cobra.Command{list, info, verify} {
		c.Flags().StringVar(&region, "region", "", "region whose repository to use (default: the primary's)")
	}
	cmd.AddCommand(now, list, info, verify)
	return cmd
}

func withinWord(seconds float64, rto time.Duration) string {
	if seconds <= rto.Seconds() {
		return "within"
	}
	return "OVER"
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// estimateSize is the databases' size, the length of a progress bar.
func estimateSize(ctx context.Context, e *backupEnv) int64 {
	rep, err := status.Collect(ctx, e.s, e.t)
	if err != nil {
		return -1
	}
	for _, w := range rep.Workloads {
		if w.Name != e.w.Name {
			continue
		}
		for _, n := range w.Nodes {
			if n.Role != string(lifeline.RolePrimary) {
				continue
			}
			conn, err := e.b.ConnectNode(ctx, e.w, n.Region, n.Zone)
			if err != nil {
				return -1
			}
			defer conn.Close(context.Background())
			var size int64
			if conn.QueryRow(ctx, "SELECT sum(pg_database_size(datname))::bigint FROM pg_database").Scan(&size) == nil {
				return size
			}
		}
	}
	return -1
}

// progressFor draws a progress bar with throughput on a terminal and plain
// lines every few seconds otherwise.
func progressFor(out io.Writer, total int64) (func(backup.Progress), func()) {
	if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(out), progressbar.OptionShowBytes(true), progressbar.OptionSetWidth(30),
			progressbar.OptionSetDescription("backup"), progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionSetPredictTime(true))
		return func(p backup.Progress) {
				if p.Bytes > bar.GetMax64() {
					bar.ChangeMax64(p.Bytes)
				}
				if p.Phase != "copy" {
					bar.Describe("backup: " + p.Phase)
				}
				_ = bar.Set64(p.Bytes)
			}, func() {
				_ = bar.Finish()
				fmt.Fprintln(out)
			}
	}
	last := time.Time{}
	return func(p backup.Progress) {
		if time.Since(last) < 5*time.Second && p.Phase == "copy" {
			return
		}
		last = time.Now()
		rate := float64(p.Bytes) / 1e6 / max(p.Elapsed.Seconds(), 0.001)
		fmt.Fprintf(out, "backup: %s %s in %s (%.1f MB/s), %d parts\n", p.Phase, mb(p.Bytes), p.Elapsed.Round(time.Second), rate, p.Parts)
	}, func() {}
}

func newRestore() *cobra.Command {
	var dataDir, workload, region, into, toTime, toLSN string
	var latest, start bool
	var port int
	cmd := &cobra.Command{
		Use:   "restore --into DIR (--to-time T | --to-lsn L | --latest) [--region R] [--start]",
		Short: "Build a data directory at a point in time from a region's repository; optionally start it as a side instance",
		Long: `Restores the newest backup that ends before the target and replays archived WAL up to
it. T is RFC 3339 (2026-11-25T10:15:00Z) or "2006-01-02 15:04:05" in local time.
With --start the copy runs on a free port as a side instance until Ctrl-C, so rows can
be pulled out of it after a bad DELETE; it never archives into a repository.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var target backup.Target
			n := 0
			if toTime != "" {
				n++
				t, err := parseTime(toTime)
				if err != nil {
					return err
				}
				target.Time = t
			}
			if toLSN != "" {
				n++
				l, err := lifeline.ParseLSN(toLSN)
				if err != nil {
					return err
				}
				target.LSN = l
			}
			if latest {
				n++
				target.Latest = true
			}
			if n != 1 {
				return &exitError{code: 2, err: fmt.Errorf("give exactly one of --to-time, --to-lsn, --latest")}
			}
			if into == "" {
				return &exitError{code: 2, err: fmt.Errorf("--into DIR is required")}
			}
			e, err := openBackupEnv(dataDir, workload)
			if err != nil {
				return err
			}
			defer e.s.Close()
			ctx := cmd.Context()
			into, err = filepath.Abs(into)
			if err != nil {
				return err
			}
			if err := e.b.Owner.CheckReachable(into); err != nil {
				return err
			}
			repo, r, err := e.repo(ctx, region)
			if err != nil {
				return err
			}
			defer repo.Close()
			restoreCmd, err := e.b.RestoreCommand(e.w, r, filepath.Join(e.dataDir, "scratch"))
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "restoring %s from %s into %s...\n", e.w.Name, repo, into)
			res, err := repo.Restore(ctx, into, target, backup.RestoreOptions{RestoreCommand: restoreCmd, Owner: e.b.Owner})
			if err != nil {
				return err
			}
			for _, note := range res.Notes {
				fmt.Fprintln(cmd.ErrOrStderr(), "note:", note)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored backup %s (%s) in %.1fs into %s; recovery replays WAL to %s when the server starts\n",
				res.Backup.ID, mb(res.Bytes), res.Seconds, into, describeTarget(res.Target))
			if !start {
				return nil
			}
			return runSide(ctx, cmd, e, into, port, restoreCmd)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&workload, "workload", "", "workload (default: the only one)")
	cmd.Flags().StringVar(&region, "region", "", "region whose repository to restore from (default: the primary's)")
	cmd.Flags().StringVar(&into, "into", "", "the data directory to build (empty or absent), as pg_basebackup -D; pg_ctl -D DIR starts it")
	cmd.Flags().StringVar(&toTime, "to-time", "", "restore every transaction committed up to this time")
	cmd.Flags().StringVar(&toLSN, "to-lsn", "", "restore up to this WAL position")
	cmd.Flags().BoolVar(&latest, "latest", false, "restore everything in the archive")
	cmd.Flags().BoolVar(&start, "start", false, "start the copy as a side instance and wait for Ctrl-C")
	cmd.Flags().IntVar(&port, "port", 0, "side instance port (default: a free one)")
	return cmd
}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", s, time.Local); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("time %q: want RFC 3339 (2026-11-25T10:15:00Z) or \"2006-01-02 15:04:05\"", s)
}

func describeTarget(t backup.Target) string {
	switch {
	case t.Latest:
		return "the end of the archive"
	case !t.Time.IsZero():
		return t.Time.Format(time.RFC3339Nano)
	default:
		return t.LSN.String()
	}
}

// runSide starts a restored copy on a free loopback port and waits for
// Ctrl-C: a side instance to pull rows out of.
func runSide(ctx context.Context, cmd *cobra.Command, e *backupEnv, into string, port int, restoreCmd string) error {
	if port == 0 {
		p, err := freePort("127.0.0.1")
		if err != nil {
			return err
		}
		port = p
	}
	// The log goes next to the data directory, not into it.
	pg := postgres.New(postgres.Config{
		Name: "side copy", BinDir: e.b.PGBin, Dir: filepath.Dir(into), Data: into, Owner: e.b.Owner, Address: "127.0.0.1", Port: port,
		Superuser: e.w.Database.Superuser, ReplicationUser: e.w.Database.ReplicationUser,
		Trust:      []string{"127.0.0.1"},
		Parameters: agent.SmallParameters,
	})
	// hot_standby off: the copy refuses connections until recovery has
	// reached its target and promoted, so nobody reads it half-replayed
	// (with hot standby it would serve the rows of the backup's end point).
	extra := map[string]string{"archive_mode": "off", "hot_standby": "off", "restore_command": restoreCmd}
	if err := pg.WriteConfig(postgres.Settings{AppName: "side_copy", Extra: extra}); err != nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "starting the side instance on 127.0.0.1:%d; it accepts connections once recovery has replayed WAL to the target (log: %s)\n", port, pg.LogFile())
	sctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	err := pg.Start(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("start the side instance: %w (log: %s)", err, pg.LogFile())
	}
	if st, err := pg.Status(ctx); err != nil {
		return fmt.Errorf("side instance: %w", err)
	} else if st.InRecovery {
		return fmt.Errorf("side instance: still in recovery after start (log: %s)", pg.LogFile())
	}
	// A scratch copy on 127.0.0.1 only, without TLS.
	fmt.Fprintf(cmd.OutOrStdout(), "side instance running: psql \"host=127.0.0.1 port=%d user=%s sslmode=disable\"   (Ctrl-C stops it; the data stays in %s)\n", port, e.w.Database.Superuser, into)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-sig:
	case <-ctx.Done():
	}
	stopCtx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	return pg.Stop(stopCtx)
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
