package main

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/wan"
)

func newNode() *cobra.Command {
	var dataDir string
	var freezeFor time.Duration
	cmd := &cobra.Command{
		Use:   "node kill|stop|start|freeze|thaw|list [REGION/ZONE|REGION|witness]",
		Short: "Lose or bring back a node of the local topology on purpose",
		Long: `kill   SIGKILL the node's agent, its etcd member and its PostgreSQL at once (a lost zone);
       kill REGION kills every node of the region at the same instant (a lost region)
stop   stop the node's agent cleanly (it stops its PostgreSQL)
start  start the node's agent again; start REGION starts the region's stopped nodes
freeze SIGSTOP the node's processes for --for (then SIGCONT; at most 10m)
thaw   SIGCONT a frozen node at once
list   show the topology's processes`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"kill", "stop", "start", "freeze", "thaw", "list"},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := local.Dial(dataDir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Minute)
			defer cancel()
			var states []local.NodeState
			switch {
			case args[0] == "list":
				states, err = c.Nodes(ctx)
			case len(args) != 2:
				return fmt.Errorf("node %s needs REGION/ZONE or witness", args[0])
			case args[0] == "freeze":
				if freezeFor <= 0 {
					return fmt.Errorf("node freeze needs --for DURATION (e.g. --for 10s)")
				}
				states, err = c.Freeze(ctx, args[1], freezeFor)
			default:
				states, err = c.Node(ctx, args[1], args[0])
			}
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tSTATE\tPID")
			for _, s := range states {
				fmt.Fprintf(tw, "%s\t%s\t%d\n", s.Name, s.State, s.PID)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().DurationVar(&freezeFor, "for", 0, "how long freeze stops the node")
	return cmd
}

func newLink() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "link cut|heal|latency|show [A [B [+DURATION]]]",
		Short: "Cut, heal or slow down emulated network links of the local topology",
		Long: `A and B are regions, nodes (REGION/ZONE) or witness.
cut A B   partition A from B        cut A    isolate A from everything
heal A B  heal that cut             heal     heal every cut
latency A B +50ms   add 50ms each way to every route between A and B
latency A B 0       remove that extra latency`,
		Args: cobra.RangeArgs(1, 4),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := local.Dial(dataDir)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			var rule wan.Rule
			if len(args) > 1 {
				rule.A = args[1]
			}
			if len(args) > 2 {
				rule.B = args[2]
			}
			var l local.Links
			switch args[0] {
			case "show":
				l, err = c.Links(ctx)
			case "cut":
				if rule.A == "" {
					return fmt.Errorf("link cut needs A [B]")
				}
				l, err = c.Link(ctx, "cut", rule)
			case "latency":
				if len(args) != 4 {
					return fmt.Errorf("link latency needs A B +DURATION (or 0 to remove it)")
				}
				l, err = c.Delay(ctx, rule, args[3])
			case "heal":
				if rule.A == "" {
					rule.A = "*"
				}
				l, err = c.Link(ctx, "heal", rule)
			default:
				return fmt.Errorf("unknown action %q: want cut, heal, latency or show", args[0])
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d routes, cross-region latency %.1fms each way\n", l.Routes, l.LatencyMS)
			if len(l.Cuts) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no cuts")
			}
			for _, r := range l.Cuts {
				fmt.Fprintln(cmd.OutOrStdout(), "cut:", r)
			}
			for _, d := range l.Delays {
				fmt.Fprintf(cmd.OutOrStdout(), "extra latency: %s +%s each way\n", d.Rule, d.Extra)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	return cmd
}
