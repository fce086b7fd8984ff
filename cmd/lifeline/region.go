package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/runbook"
	"github.com/lifeline-dr/lifeline/store"
)

// actor names the operator for the audit log: --as, else the OS user.
func actor(as string) string {
	if as != "" {
		return as
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "operator"
}

func catalog(t *lifeline.Topology) controller.Catalog {
	return controller.Catalog{Env: &controller.Env{T: t}}
}

// printPlan prints a runbook kind's steps for a workload without running them.
func printPlan(out io.Writer, w *lifeline.Workload, kind, detail string) error {
	steps, phase, err := controller.Plan(kind, w.Strategy)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s of %s (%s, %s; phase %s while it runs):\n", kind, w.Name, w.Strategy, detail, phase)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for i, s := range steps {
		fmt.Fprintf(tw, "  %d.\t%s\t%s\n", i+1, s, controller.StepDoc[s])
	}
	return tw.Flush()
}

// follow prints a runbook's steps as they end, until it ends; its error is
// the runbook's.
func follow(ctx context.Context, out io.Writer, s *store.Store, id string) error {
	printed := map[string]bool{}
	waiting := false
	lastRead := time.Now()
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		rb, err := runbook.Get(rctx, s, id)
		cancel()
		if err != nil {
			if time.Since(lastRead) > time.Minute {
				return fmt.Errorf("runbook %s: the control store does not answer (%w); it may still run: lifeline runbooks", id, err)
			}
			fmt.Fprintf(out, "  (cannot read the runbook: %v; retrying)\n", err)
		} else {
			lastRead = time.Now()
			for _, st := range rb.Steps {
				if (st.State == runbook.Succeeded || st.State == runbook.Skipped || st.State == runbook.Failed) && !printed[st.Name] {
					printed[st.Name] = true
					fmt.Fprintf(out, "  %-15s %-9s %6.2fs  %s%s\n", st.Name, st.State, st.Seconds, st.Note, st.Error)
				}
				if st.Name == "await-approval" && st.State == runbook.Running && !waiting {
					waiting = true
					fmt.Fprintf(out, "  waiting for approval: lifeline approve %s\n", rb.ID)
				}
			}
			switch rb.State {
			case runbook.Succeeded:
				fmt.Fprintf(out, "%s succeeded in %.1fs\n", rb.ID, rb.Seconds())
				return nil
			case runbook.Failed:
				return fmt.Errorf("runbook %s failed: %s", rb.ID, rb.Error)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("runbook %s still running (lifeline runbooks shows it): %w", id, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// begin starts a runbook for an operator and follows it unless asked not to.
func begin(cmd *cobra.Command, t *lifeline.Topology, s *store.Store, req runbook.Request, wait bool) error {
	ctx := cmd.Context()
	bctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	rb, err := runbook.Begin(bctx, s, catalog(t), req, time.Now(), "")
	cancel()
	if err != nil {
		if errors.Is(err, runbook.ErrLocked) {
			return &exitError{code: 3, err: err}
		}
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "started %s (%s of %s); the controller leader runs it\n", rb.ID, req.Kind, req.Workload)
	if !wait {
		return nil
	}
	return follow(ctx, cmd.OutOrStdout(), s, rb.ID)
}

func newApprove() *cobra.Command { return newDecision(true) }
func newReject() *cobra.Command  { return newDecision(false) }

func newDecision(approve bool) *cobra.Command {
	var dataDir, reason, as string
	var force bool
	verb, what := "approve", "Let a region failover that waits at its approval gate go on"
	if !approve {
		verb, what = "reject", "End a region failover that waits at its approval gate, changing nothing"
	}
	cmd := &cobra.Command{
		Use:   verb + " RUNBOOK [--reason TEXT]",
		Short: what,
		Long: what + `. The decision, who took it, when and why, is written to the audit log in the
same transaction as the decision itself, before the runbook moves on. Approving checks that
the region failed over to can take over (a running standby within the RPO of the lost
primary's last position, or for backup-restore a base backup in its own repository);
--force overrides those refusals and is recorded.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, s, err := openStore(dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			rb, err := runbook.Get(ctx, s, args[0])
			if err != nil {
				return err
			}
			w, err := t.Workload(rb.Workload)
			if err != nil {
				return err
			}
			if approve && !force {
				st, _, _, err := s.State(ctx, w.Name)
				if err != nil {
					return err
				}
				reports, err := s.Statuses(ctx, w.Name)
				if err != nil {
					return err
				}
				var copyRec *lifeline.CopyRecord
				var rec lifeline.CopyRecord
				if _, found, err := s.Get(ctx, s.Keys().BackupState(w.Name, "copy-"+rb.Params["to_region"]), &rec); err == nil && found {
					copyRec = &rec
				}
				if err := controller.CheckFailover(t, w, st, rb.Params["to_region"], reports, rb.Evidence, copyRec, time.Now()); err != nil {
					return &exitError{code: 3, err: fmt.Errorf("approve %s: %w", rb.ID, err)}
				}
				if err := checkReady(ctx, t, s, w, rb.Params["to_region"]); err != nil {
					return &exitError{code: 3, err: fmt.Errorf("approve %s: %w", rb.ID, err)}
				}
			}
			a := &lifeline.Approval{Runbook: rb.ID, Approve: approve, By: actor(as), At: time.Now().UTC(), Reason: reason, Force: force}
			_, err = s.UpdateState(ctx, w.Name, func(st *lifeline.WorkloadState, c *store.Change) error {
				switch {
				case st.Runbook != rb.ID:
					return fmt.Errorf("%s is not in progress (the workload's runbook is %q)", rb.ID, st.Runbook)
				case st.Approval != nil && st.Approval.Runbook == rb.ID:
					return fmt.Errorf("%s was %s already by %s at %s", rb.ID, map[bool]string{true: "approved", false: "rejected"}[st.Approval.Approve],
						st.Approval.By, st.Approval.At.Local().Format("15:04:05"))
				case st.Phase != lifeline.PhaseWaitingApproval:
					return fmt.Errorf("%s does not wait for approval (phase %s)", rb.ID, st.Phase)
				}
				st.Approval = a
				if approve {
					st.Phase = lifeline.PhaseFailingOver
				}
				result := verb + "d"
				detail := reason
				if force {
					detail = "forced (readiness refusals overridden): " + detail
				}
				c.Audit = []lifeline.AuditEntry{{Time: a.At, Runbook: rb.ID, Workload: w.Name, Kind: "approval", Step: "await-approval", Result: result, Detail: detail, Actor: a.By}}
				return nil
			})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%sd %s as %s\n", verb, rb.ID, a.By)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.Flags().StringVar(&as, "as", "", "who decides (default: the OS user)")
	if approve {
		cmd.Flags().BoolVar(&force, "force", false, "override the readiness refusals (recorded in the audit log)")
	}
	return cmd
}

func newFailover() *cobra.Command {
	var dataDir, workload, to, reason, as string
	var force, plan, noWait bool
	cmd := &cobra.Command{
		Use:   "failover --workload W --to REGION [--force] [--plan]",
		Short: "Fail a workload over to another region now (an operator's decision: the approval is yours)",
		Long: `Starts the region-failover runbook towards REGION, approved by you: it fences the active
region (its primary must have lost its lease; --force revokes it), promotes the most advanced
standby of REGION (or, for backup-restore, restores there from REGION's own repository), scales
the services and reroutes. Refused, with the evidence, when REGION cannot take over (no running
standby, lag beyond the RPO, no backup); --force overrides and is recorded in the audit log.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, s, err := openStore(dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			w, err := pickWorkload(t, workload)
			if err != nil {
				return err
			}
			if to == "" {
				return &exitError{code: 2, err: errors.New("--to REGION is required")}
			}
			if _, err := t.Region(to); err != nil {
				return &exitError{code: 2, err: err}
			}
			if plan {
				return printPlan(cmd.OutOrStdout(), w, string(controller.RegionFailover), "to "+to)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			snap, err := s.ReadSnapshot(ctx, w.Name)
			cancel()
			if err != nil {
				return err
			}
			if !snap.HasState {
				return fmt.Errorf("%s: %w", w.Name, store.ErrNoState)
			}
			ev := controller.BuildEvidence(t, w, snap.State, snap.State.Active, snap.Reports[snap.State.Primary], snap.Reports, controller.Verdict{}, time.Now())
			var copyRec *lifeline.CopyRecord
			var rec lifeline.CopyRecord
			ctx, cancel = context.WithTimeout(cmd.Context(), 15*time.Second)
			if _, found, err := s.Get(ctx, s.Keys().BackupState(w.Name, "copy-"+to), &rec); err == nil && found {
				copyRec = &rec
			}
			cancel()
			if !force {
				if err := controller.CheckFailover(t, w, snap.State, to, snap.Reports, &ev, copyRec, time.Now()); err != nil {
					return &exitError{code: 3, err: fmt.Errorf("failover of %s to %s: %w", w.Name, to, err)}
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
				err := checkReady(ctx, t, s, w, to)
				cancel()
				if err != nil {
					return &exitError{code: 3, err: fmt.Errorf("failover of %s to %s: %w", w.Name, to, err)}
				}
			}
			who := actor(as)
			params := map[string]string{"from": snap.State.Primary, "epoch": itoa(snap.State.Epoch), "from_region": snap.State.Active, "to_region": to,
				"approved_by": who, "reason": reason, "lost_at": time.Now().UTC().Format(time.RFC3339Nano)}
			if force {
				params["force"] = "true"
			}
			ev.Copy = copyRec
			return begin(cmd, t, s, runbook.Request{Workload: w.Name, Kind: string(controller.RegionFailover), Params: params, Evidence: &ev, Actor: who, Reason: reason}, !noWait)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&workload, "workload", "", "workload (default: the only one)")
	cmd.Flags().StringVar(&to, "to", "", "region to fail over to")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.Flags().StringVar(&as, "as", "", "who decides (default: the OS user)")
	cmd.Flags().BoolVar(&force, "force", false, "override readiness refusals and revoke a lease still held (recorded in the audit log)")
	cmd.Flags().BoolVar(&plan, "plan", false, "print the steps without running them")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "start the runbook and return")
	return cmd
}

func newSwitchover() *cobra.Command { return newPlanned(controller.Switchover) }
func newFailback() *cobra.Command   { return newPlanned(controller.Failback) }

func newPlanned(kind string) *cobra.Command {
	var dataDir, workload, to, reason, as string
	var plan, noWait bool
	use, short, long := "switchover --workload W --to REGION[/ZONE] [--plan]",
		"Move the writer to another region or zone with no data loss (planned)",
		`Stops writes on the primary cleanly (a shutdown checkpoint every connected standby
receives), waits until the target has replayed it, promotes the target and repoints the
others; the old primary follows the new one without a rewind or a copy. With a region as
target, its most advanced streaming standby is taken. A target that does not stream is
refused.`
	if kind == controller.Failback {
		use, short, long = "failback --workload W [--to REGION] [--plan]",
			"Bring the writer back to the region a failover left, once it has returned",
			`Lifts the fence on the region (default: the spec's active region), waits until its nodes
stream again (the old primary rejoins by pg_rewind, its WAL written after the fork saved to the
repository; else by a new base backup), then moves the writer back with a switchover: no
acknowledged write is lost. The runbook notes the bytes each rejoin copied.`
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, s, err := openStore(dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			w, err := pickWorkload(t, workload)
			if err != nil {
				return err
			}
			if kind == controller.Failback && to == "" {
				to = w.Active
			}
			if to == "" {
				return &exitError{code: 2, err: errors.New("--to REGION or REGION/ZONE is required")}
			}
			region := to
			if id, err := lifeline.ParseNodeID(to); err == nil {
				if _, err := t.Zone(id); err != nil {
					return &exitError{code: 2, err: err}
				}
				region = id.Region
			} else if _, err := t.Region(to); err != nil {
				return &exitError{code: 2, err: err}
			}
			if plan {
				return printPlan(cmd.OutOrStdout(), w, kind, "to "+to)
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			st, _, found, err := s.State(ctx, w.Name)
			if err != nil {
				return err
			}
			if !found {
				return fmt.Errorf("%s: %w", w.Name, store.ErrNoState)
			}
			if kind == controller.Switchover {
				reports, err := s.Statuses(ctx, w.Name, clientv3.WithSerializable())
				if err != nil {
					return err
				}
				if _, err := controller.SwitchoverTarget(t, w, st, to, reports, time.Now()); err != nil {
					return &exitError{code: 3, err: fmt.Errorf("switchover of %s to %s refused: %w", w.Name, to, err)}
				}
			} else if st.Active == region && !st.IsFenced(region) {
				return &exitError{code: 3, err: fmt.Errorf("failback of %s refused: %s is the active region already", w.Name, region)}
			}
			who := actor(as)
			params := map[string]string{"from": st.Primary, "epoch": itoa(st.Epoch), "target": to, "to_region": region, "from_region": st.Active}
			return begin(cmd, t, s, runbook.Request{Workload: w.Name, Kind: kind, Params: params, Actor: who, Reason: reason}, !noWait)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&workload, "workload", "", "workload (default: the only one)")
	cmd.Flags().StringVar(&to, "to", "", "target region, or REGION/ZONE")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.Flags().StringVar(&as, "as", "", "who asks (default: the OS user)")
	cmd.Flags().BoolVar(&plan, "plan", false, "print the steps without running them")
	cmd.Flags().BoolVar(&noWait, "no-wait", false, "start the runbook and return")
	return cmd
}

func newAlarms() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "alarms [--json]",
		Short: "List the alarms raised (a region down, with its evidence)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, s, err := openStore(dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			var all []lifeline.Alarm
			for _, w := range t.Workloads {
				as, err := s.Alarms(ctx, w.Name)
				if err != nil {
					return err
				}
				all = append(all, as...)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if all == nil {
					all = []lifeline.Alarm{}
				}
				return enc.Encode(all)
			}
			if len(all) == 0 {
				fmt.Fprintln(out, "no alarms")
			}
			for _, a := range all {
				state := "ACTIVE"
				if !a.Cleared.IsZero() {
					state = "cleared " + a.Cleared.Local().Format("15:04:05")
				}
				fmt.Fprintf(out, "%s  %s  %s  %s  %s\n  %s\n", a.Raised.Local().Format("2006-01-02 15:04:05"), a.Severity, a.Kind, a.Workload, state, a.Summary)
				if a.Evidence != nil {
					for _, sb := range a.Evidence.Standbys {
						fmt.Fprintf(out, "  standby %s received %s, replayed %s, lag %d bytes %.2fs\n", sb.Node, sb.ReceiveLSN, sb.ReplayLSN, sb.LagBytes, sb.LagSeconds)
					}
					if len(a.Evidence.Seen) > 0 {
						fmt.Fprintf(out, "  seen: %s\n", strings.Join(a.Evidence.Seen, "; "))
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func itoa(n int64) string { return fmt.Sprint(n) }
