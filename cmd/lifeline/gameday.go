package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/spec"
)

func newGameday() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gameday run|history",
		Short: "Rehearse a disaster: load, faults, measured RPO and RTO, a report",
	}
	cmd.AddCommand(newGamedayRun(), newGamedayHistory())
	return cmd
}

func newGamedayRun() *cobra.Command {
	var dataDir, out, attach, strategy string
	var keep bool
	cmd := &cobra.Command{
		Use:   "run SCENARIO [--out DIR] [--attach DATADIR] [--strategy S]",
		Short: "Run a game day scenario and write its report; exit 0 only when every expectation held",
		Long: `Starts the scenario's spec (lifeline up, under each of its strategies) or attaches to a
running topology, runs the load with a ledger of every request, injects the timeline's
faults and actions through the lifeline commands, heals everything, and writes
report.json (with the raw events), report.md and report.html into --out (default
DATA/gamedays/RUN). Ctrl-C heals the faults and stops what the game day started; a
second Ctrl-C passes on to the topology. Exit status: 0 when every expectation held,
1 when one did not, 2 for a scenario with errors. Scenarios: examples/gamedays/.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sc, err := gameday.LoadScenario(args[0])
			if err != nil {
				var se spec.Errors
				if errors.As(err, &se) {
					return &exitError{code: 2, err: err}
				}
				return err
			}
			if strategy != "" {
				if !containsStrategy(sc.Strategies, lifeline.Strategy(strategy)) {
					return &exitError{code: 2, err: fmt.Errorf("%s lists no strategy %q (it lists %v)", args[0], strategy, sc.Strategies)}
				}
				sc.Strategies = []lifeline.Strategy{lifeline.Strategy(strategy)}
			}
			reports, err := runGamedays(cmd, sc, gameday.Options{DataDir: dataDir, Out: out, Attach: attach, Keep: keep})
			if err != nil {
				return err
			}
			failed := 0
			for _, r := range reports {
				printVerdict(cmd, r)
				if !r.Passed {
					failed++
				}
			}
			if failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("%d of %d game days FAILED", failed, len(reports))}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the history of game days is kept")
	cmd.Flags().StringVar(&out, "out", "", "report folder (default DATA/gamedays/RUN)")
	cmd.Flags().StringVar(&attach, "attach", "", "data directory of a running topology to use instead of the scenario's")
	cmd.Flags().StringVar(&strategy, "strategy", "", "run under this one of the scenario's strategies only")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the databases and backups of a topology the game day started, and restored copies")
	return cmd
}

func containsStrategy(list []lifeline.Strategy, s lifeline.Strategy) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runGamedays runs a scenario with the live line on a terminal's stderr;
// a second Ctrl-C is passed on to the topologies the game day started.
func runGamedays(cmd *cobra.Command, sc *gameday.Scenario, opts gameday.Options) ([]*gameday.Report, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	opts.Binary = exe
	opts.Log = cmd.ErrOrStderr()
	opts.Live = cmd.ErrOrStderr()
	opts.Terminal = term.IsTerminal(int(os.Stderr.Fd()))
	opts.Children = &gameday.Children{}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; !ok {
			return
		}
		fmt.Fprintln(cmd.ErrOrStderr(), "\nstopping: healing the faults (Ctrl-C again to stop the topology at once)")
		if _, ok := <-sigs; ok {
			opts.Children.Signal(syscall.SIGTERM)
		}
	}()
	return gameday.Run(cmd.Context(), sc, opts)
}

func printVerdict(cmd *cobra.Command, r *gameday.Report) {
	w := cmd.OutOrStdout()
	f := r.Figures
	rto := "not measured"
	if f.RTOSeconds != nil {
		rto = fmt.Sprintf("%.2fs", *f.RTOSeconds)
	}
	name := r.Scenario
	if r.Strategy != "" {
		name += " (" + r.Strategy + ")"
	}
	fmt.Fprintf(w, "%s: %s  RPO %s  RTO %s  %d requests, %.1f%% ok  report %s\n",
		name, r.Result(), f.RPOText(), rto, f.Attempts, f.Availability, filepath.Join(r.Dir, gameday.ReportHTML))
	for _, v := range r.Verdicts {
		mark := "ok  "
		if !v.Passed {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-28s measured %s\n", mark, v.Expectation, v.Got)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  problem: %s\n", p)
	}
	if r.Aborted != "" {
		fmt.Fprintf(w, "  aborted: %s\n", r.Aborted)
	}
}

func newGamedayHistory() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "history [--json]",
		Short: "List past game days and how their RPO and RTO moved",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			entries, err := gameday.History(dataDir)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if entries == nil {
					entries = []gameday.HistoryEntry{}
				}
				return enc.Encode(entries)
			}
			return gameday.PrintHistory(cmd.OutOrStdout(), entries)
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the history of game days is kept")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
