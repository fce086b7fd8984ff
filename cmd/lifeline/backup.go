package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/agent"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/backup"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/postgres"
	"github.com/lifeline-dr/lifeline/sidecopy"
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
		Long: `Takes a full base backup now, on an agent (through its API, as a token of the operator
role), from a standby of the primary's region when one is healthy. It waits until the backup is
stored; a hang-up does not abort it.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, c, err := operatorClient(cmd, dataDir)
			if err != nil {
				return err
			}
			w, err := pickWorkload(t, workload)
			if err != nil {
				return err
			}
			var info backup.Info
			fmt.Fprintf(cmd.ErrOrStderr(), "taking a base backup of %s...\n", w.Name)
			if err := c.Do(cmd.Context(), http.MethodPost, api.V1+"/workloads/"+url.PathEscape(w.Name)+"/backups", nil, &info); err != nil {
				return apiError(err)
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), info)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s of %s from %s (through %s): %s in %.1fs (%.1f MB/s), WAL %s..%s\n",
				info.ID, w.Name, info.Node, c.Endpoint(), mb(info.Bytes), info.Duration.Seconds(), float64(info.Bytes)/1e6/info.Duration.Seconds(), info.StartWAL, info.StopWAL)
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
		Long: `A restore drill, run by an agent (through its API, as a token of the operator role):
the latest backup of the region's repository is restored into a scratch directory, started,
checked with amcheck and counted, then removed. The result is recorded (status shows it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, c, err := operatorClient(cmd, dataDir)
			if err != nil {
				return err
			}
			w, err := pickWorkload(t, workload)
			if err != nil {
				return err
			}
			if region != "" {
				if _, err := t.Region(region); err != nil {
					return &exitError{code: 2, err: err}
				}
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "verifying the latest backup of %s in %s...\n", w.Name, orDash(region))
			var res backup.VerifyResult
			path := api.V1 + "/workloads/" + url.PathEscape(w.Name) + "/backups/verify"
			if region != "" {
				path += "?region=" + url.QueryEscape(region)
			}
			if err := c.Do(cmd.Context(), http.MethodPost, path, nil, &res); err != nil {
				return apiError(err)
			}
			if asJSON {
				_ = printJSON(cmd.OutOrStdout(), res)
			} else {
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
					verdict, backupID, res.RestoreSeconds, res.RecoverySeconds, res.TotalSeconds, w.Objectives.RTO, withinWord(res.TotalSeconds, w.Objectives.RTO), res.Indexes, len(res.Tables), rows)
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
			r, err := e.region(ctx, region)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "restoring %s from %s's repository into %s...\n", e.w.Name, r, into)
			res, restoreCmd, err := sidecopy.Restore(ctx, e.b, e.w, r, target, into)
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
	fmt.Fprintf(cmd.ErrOrStderr(), "starting the side instance on 127.0.0.1:%d; it accepts connections once recovery has replayed WAL to the target (log next to %s)\n", port, into)
	pg, err := sidecopy.Start(ctx, e.b, e.w, into, restoreCmd, "127.0.0.1", port, agent.SmallParameters)
	if err != nil {
		return err
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
