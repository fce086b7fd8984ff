package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/controller"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/ops"
	"github.com/lifeline-dr/lifeline/runbook"
)

// operatorClient is the API client of the topology in dataDir: every
// state-changing command goes through an agent's API, so that the audit
// log names the token behind the change.
func operatorClient(cmd *cobra.Command, dataDir string) (*lifeline.Topology, *api.Client, error) {
	t, err := local.LoadTopology(dataDir)
	if err != nil {
		return nil, nil, err
	}
	token, _ := cmd.Flags().GetString("token")
	ca, _ := cmd.Flags().GetString("ca")
	c, err := api.LocalClient(dataDir, t, token, ca)
	if err != nil {
		return nil, nil, err
	}
	return t, c, nil
}

// apiError turns an API refusal into the exit codes the commands have
// always had: 2 for a wrong request, 3 for a refusal or a lock.
func apiError(err error) error {
	var ce *api.CallError
	if !errors.As(err, &ce) {
		return err
	}
	switch ce.Body.Kind {
	case string(ops.Invalid):
		return &exitError{code: 2, err: err}
	case string(ops.Refused), string(ops.Locked):
		return &exitError{code: 3, err: err}
	}
	return err
}

// printPlan prints a runbook kind's steps for a workload without running them.
func printPlan(out io.Writer, t *lifeline.Topology, workload, kind, to string) error {
	p, err := ops.Plan(t, workload, kind, to)
	if err != nil {
		var oe *ops.Error
		if errors.As(err, &oe) && oe.Kind == ops.Invalid {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	fmt.Fprintf(out, "%s of %s (%s, to %s; phase %s while it runs):\n", p.Kind, p.Workload, p.Strategy, p.To, p.Phase)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for i, s := range p.Steps {
		fmt.Fprintf(tw, "  %d.\t%s\t%s\n", i+1, s.Name, s.Doc)
	}
	return tw.Flush()
}

// follow prints a runbook's steps as they end, until it ends; its error is
// the runbook's.
func follow(ctx context.Context, out io.Writer, c *api.Client, id string) error {
	printed := map[string]bool{}
	waiting := false
	lastRead := time.Now()
	for {
		var rb runbook.Runbook
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.Do(rctx, http.MethodGet, api.V1+"/runbooks/"+url.PathEscape(id), nil, &rb)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("runbook %s still running (lifeline runbooks shows it): %w", id, ctx.Err())
			}
			if time.Since(lastRead) > time.Minute {
				return fmt.Errorf("runbook %s: no agent's API answers (%w); it may still run: lifeline runbooks", id, err)
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

// begin asks an agent to start a runbook and follows it unless asked not to.
func begin(cmd *cobra.Command, c *api.Client, path string, req api.RunbookRequest, wait bool) error {
	ctx := cmd.Context()
	bctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	var started api.Started
	err := c.Do(bctx, http.MethodPost, path, req, &started)
	cancel()
	if err != nil {
		return apiError(err)
	}
	rb := started.Runbook
	fmt.Fprintf(cmd.OutOrStdout(), "started %s (%s of %s through %s); the controller leader runs it\n", rb.ID, rb.Kind, rb.Workload, c.Endpoint())
	if !wait {
		return nil
	}
	return follow(ctx, cmd.OutOrStdout(), c, rb.ID)
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
		Long: what + `. The decision, who took it (the API token, and --as), when and why, is written to
the audit log in the same transaction as the decision itself, before the runbook moves on.
Approving checks that the region failed over to can take over (a running standby within the
RPO of the lost primary's last position, or for backup-restore a base backup in its own
repository); --force overrides those refusals and is recorded. Needs a token of the
approver role; it goes through an agent's API.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, c, err := operatorClient(cmd, dataDir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 20*time.Second)
			defer cancel()
			var res api.DecisionView
			if err := c.Do(ctx, http.MethodPost, api.V1+"/runbooks/"+url.PathEscape(args[0])+"/"+verb, api.DecisionRequest{Reason: reason, Force: force, As: as}, &res); err != nil {
				return apiError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%sd %s as %s\n", verb, args[0], res.Approval.By)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.Flags().StringVar(&as, "as", "", "who decides, recorded with the token's name")
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
standby, lag beyond the RPO, no backup); --force overrides and is recorded in the audit log.
Needs a token of the approver role; it goes through an agent's API.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return &exitError{code: 2, err: errors.New("--to REGION is required")}
			}
			if plan {
				t, err := local.LoadTopology(dataDir)
				if err != nil {
					return err
				}
				return printPlan(cmd.OutOrStdout(), t, workload, string(controller.RegionFailover), to)
			}
			t, c, err := operatorClient(cmd, dataDir)
			if err != nil {
				return err
			}
			w, err := ops.Workload(t, workload)
			if err != nil {
				return err
			}
			return begin(cmd, c, api.V1+"/workloads/"+url.PathEscape(w.Name)+"/failover", api.RunbookRequest{To: to, Reason: reason, Force: force, As: as}, !noWait)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&workload, "workload", "", "workload (default: the only one)")
	cmd.Flags().StringVar(&to, "to", "", "region to fail over to")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.Flags().StringVar(&as, "as", "", "who decides, recorded with the token's name")
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
refused. Needs a token of the operator role; it goes through an agent's API.`
	if kind == controller.Failback {
		use, short, long = "failback --workload W [--to REGION] [--plan]",
			"Bring the writer back to the region a failover left, once it has returned",
			`Lifts the fence on the region (default: the spec's active region), waits until its nodes
stream again (the old primary rejoins by pg_rewind, its WAL written after the fork saved to the
repository; else by a new base backup), then moves the writer back with a switchover: no
acknowledged write is lost. The runbook notes the bytes each rejoin copied. Needs a token of
the operator role; it goes through an agent's API.`
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if plan {
				t, err := local.LoadTopology(dataDir)
				if err != nil {
					return err
				}
				return printPlan(cmd.OutOrStdout(), t, workload, kind, to)
			}
			if kind == controller.Switchover && to == "" {
				return &exitError{code: 2, err: errors.New("--to REGION or REGION/ZONE is required")}
			}
			t, c, err := operatorClient(cmd, dataDir)
			if err != nil {
				return err
			}
			w, err := ops.Workload(t, workload)
			if err != nil {
				return err
			}
			return begin(cmd, c, api.V1+"/workloads/"+url.PathEscape(w.Name)+"/"+kind, api.RunbookRequest{To: to, Reason: reason, As: as}, !noWait)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&workload, "workload", "", "workload (default: the only one)")
	cmd.Flags().StringVar(&to, "to", "", "target region, or REGION/ZONE")
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	cmd.Flags().StringVar(&as, "as", "", "who asks, recorded with the token's name")
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
