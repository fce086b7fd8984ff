package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/runbook"
)

// runbookView is the JSON shape of `lifeline runbooks --json`.
type runbookView struct {
	ID       string            `json:"id"`
	Workload string            `json:"workload"`
	Kind     string            `json:"kind"`
	State    runbook.State     `json:"state"`
	Started  time.Time         `json:"started"`
	Seconds  float64           `json:"seconds"`
	Leader   string            `json:"leader"`
	Error    string            `json:"error,omitempty"`
	Params   map[string]string `json:"params"`
	Steps    []runbook.Step    `json:"steps"`
	// StartedBy, Evidence and Approval: who asked, what a region failover
	// was decided on, and the decision at its gate.
	StartedBy string             `json:"started_by,omitempty"`
	Evidence  *lifeline.Evidence `json:"evidence,omitempty"`
	Approval  *lifeline.Approval `json:"approval,omitempty"`
}

func newRunbooks() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "runbooks [--json]",
		Short: "List running and past runbooks (failovers) with their steps and timings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, s, err := openStore(dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			rbs, err := runbook.List(ctx, s)
			if err != nil {
				return err
			}
			views := make([]runbookView, 0, len(rbs))
			for _, rb := range rbs {
				views = append(views, runbookView{
					ID: rb.ID, Workload: rb.Workload, Kind: rb.Kind, State: rb.State, Started: rb.Created,
					Seconds: rb.Seconds(), Leader: rb.Leader, Error: rb.Error, Params: rb.Params, Steps: rb.Steps,
					StartedBy: rb.StartedBy, Evidence: rb.Evidence, Approval: rb.Approval,
				})
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(views)
			}
			if len(views) == 0 {
				fmt.Fprintln(out, "no runbooks yet")
			}
			for _, v := range views {
				fmt.Fprintf(out, "%s  %s  %s  %s  %.1fs  (by %s)\n", v.Started.Local().Format("2006-01-02 15:04:05"), v.Workload, v.Kind, v.State, v.Seconds, v.Leader)
				fmt.Fprintf(out, "  id %s", v.ID)
				if v.StartedBy != "" {
					fmt.Fprintf(out, ", asked by %s", v.StartedBy)
				}
				fmt.Fprintln(out)
				if v.Error != "" {
					fmt.Fprintf(out, "  error: %s\n", v.Error)
				}
				if ev := v.Evidence; ev != nil {
					fmt.Fprintf(out, "  evidence: region %s lost (primary %s, last at %s)", ev.Region, ev.Primary, orDash(ev.PrimaryLSN))
					if ev.EstimatedLossBytes >= 0 {
						fmt.Fprintf(out, "; estimated loss %d bytes, %.2fs", ev.EstimatedLossBytes, ev.EstimatedLossSeconds)
					}
					fmt.Fprintln(out)
					for _, sb := range ev.Standbys {
						fmt.Fprintf(out, "    %s received %s, replayed %s\n", sb.Node, orDash(sb.ReceiveLSN), orDash(sb.ReplayLSN))
					}
					if ev.Copy != nil {
						fmt.Fprintf(out, "    copy of the backups in %s: newest WAL %s, newest backup %s\n", ev.Copy.Region, orDash(ev.Copy.NewestWAL), orDash(ev.Copy.Backup))
					}
				}
				if a := v.Approval; a != nil {
					verb := "approved"
					if !a.Approve {
						verb = "rejected"
					}
					fmt.Fprintf(out, "  %s by %s at %s: %s\n", verb, a.By, a.At.Local().Format("15:04:05"), orDash(a.Reason))
				} else if v.State == runbook.Running {
					for _, st := range v.Steps {
						if st.Name == "await-approval" && st.State == runbook.Running {
							fmt.Fprintf(out, "  WAITING FOR APPROVAL: lifeline approve %s [--reason TEXT], or lifeline reject %s\n", v.ID, v.ID)
						}
					}
				}
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				for _, st := range v.Steps {
					fmt.Fprintf(tw, "  %s\t%s\t%.2fs\t%s%s\n", st.Name, st.State, st.Seconds, st.Note, st.Error)
				}
				tw.Flush()
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
