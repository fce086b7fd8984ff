package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/router"
)

func newRouting() *cobra.Command {
	var dataDir, workload, reason, as string
	var force, asJSON bool
	cmd := &cobra.Command{
		Use:   "routing set REGION=on|off ... | routing show",
		Short: "Switch regions in and out of routing, under safety rules checked atomically",
		Long: `Routing controls are on/off switches per workload and region, stored in etcd and
written to the audit log. Health never overrides a switch that is off. A change is refused,
naming the rule, when it would leave a workload with every region off, or while a runbook
holds the workload (unless --force with --reason).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch args[0] {
			case "show":
			case "set":
				if len(args) < 2 {
					return &exitError{code: 2, err: fmt.Errorf("routing set needs REGION=on|off")}
				}
				t, c, err := operatorClient(cmd, dataDir)
				if err != nil {
					return err
				}
				var names []string
				if workload != "" {
					names = []string{workload}
				} else {
					for _, w := range t.Workloads {
						names = append(names, w.Name)
					}
				}
				ctx, cancel := context.WithTimeout(cmd.Context(), 20*time.Second)
				defer cancel()
				for _, a := range args[1:] {
					region, state, ok := strings.Cut(a, "=")
					if !ok || (state != "on" && state != "off") {
						return &exitError{code: 2, err: fmt.Errorf("%q: want REGION=on or REGION=off", a)}
					}
					on := state == "on"
					for _, w := range names {
						path := api.V1 + "/workloads/" + url.PathEscape(w) + "/routing/" + url.PathEscape(region)
						if err := c.Do(ctx, http.MethodPut, path, api.RoutingRequest{On: &on, Force: force, Reason: reason, As: as}, nil); err != nil {
							return apiError(err)
						}
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s %s\n", w, region, state)
					}
				}
			default:
				return &exitError{code: 2, err: fmt.Errorf("unknown action %q: want set or show", args[0])}
			}
			t, s, err := openStore(dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			controls, err := router.Show(ctx, s, t)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(controls)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "WORKLOAD\tREGION\tROUTING\tCHANGED\tBY\tREASON")
			for _, c := range controls {
				state, changed := "on", "-"
				if !c.On {
					state = "OFF"
				}
				if !c.Changed.IsZero() {
					changed = c.Changed.Local().Format("2006-01-02 15:04:05")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Workload, c.Region, state, changed, orDash(c.Actor), orDash(c.Reason))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	cmd.Flags().StringVar(&workload, "workload", "", "workload (default: every workload)")
	cmd.Flags().BoolVar(&force, "force", false, "change even while a runbook holds the workload (needs --reason)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	cmd.Flags().StringVar(&as, "as", "", "who asks, recorded with the token's name")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
