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
	cmd := &cobra.Command{
		Use:   "node kill|stop|start|list [REGION/ZONE|witness]",
		Short: "Lose or bring back a node of the local topology on purpose",
		Long: `kill  SIGKILL the node's agent, its etcd member and its PostgreSQL at once (a lost zone)
stop  stop the node's agent cleanly (it stops its PostgreSQL)
start start the node's agent again
list  show the topology's processes`,
		Args:      cobra.RangeArgs(1, 2),
		ValidArgs: []string{"kill", "stop", "start", "list"},
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
	return cmd
}

func newLink() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "link cut|heal|show [A [B]]",
		Short: "Cut or heal emulated network links of the local topology",
		Long: `A and B are regions, nodes (REGION/ZONE) or witness.
cut A B   partition A from B        cut A    isolate A from everything
heal A B  heal that cut             heal     heal every cut`,
		Args: cobra.RangeArgs(1, 3),
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
			case "heal":
				if rule.A == "" {
					rule.A = "*"
				}
				l, err = c.Link(ctx, "heal", rule)
			default:
				return fmt.Errorf("unknown action %q: want cut, heal or show", args[0])
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
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	return cmd
}
