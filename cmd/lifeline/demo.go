package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/examples"
	"github.com/lifeline-dr/lifeline/examples/gamedays"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/spec"
)

// demoScenario is the game day `lifeline demo` runs under every strategy.
const demoScenario = "region-loss.yaml"

func newDemo() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Lose a region under each DR strategy on this machine and print the measured RPO and RTO",
		Long: `Runs the region-loss game day (examples/gamedays/region-loss.yaml) under the four
strategies, one local topology after the other, and prints the spectrum: strategy,
measured RPO, measured RTO, standby-region service instances running before the
disaster, objectives met; then the reports' paths.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			started := time.Now()
			dir := filepath.Join(dataDir, "demo", started.Format("20060102-150405"))
			scenario, err := writeDemoFiles(dir)
			if err != nil {
				return err
			}
			sc, err := gameday.LoadScenario(scenario)
			if err != nil {
				return err
			}
			reports, runErr := runGamedays(cmd, sc, gameday.Options{DataDir: dataDir, Out: filepath.Join(dir, "reports")})
			summary := demoTable(reports, filepath.Join(dir, "files"))
			out := cmd.OutOrStdout()
			fmt.Fprintln(out)
			fmt.Fprint(out, summary)
			path := filepath.Join(dir, "demo.md")
			if err := os.WriteFile(path, []byte("# lifeline demo\n\n```\n"+summary+"```\n"), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(out, "\n%.0fs in all; summary %s\n", time.Since(started).Seconds(), path)
			for _, r := range reports {
				fmt.Fprintf(out, "  %-15s %s\n", r.Strategy, filepath.Join(r.Dir, gameday.ReportHTML))
			}
			return runErr
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the demo's topologies and reports go")
	return cmd
}

// writeDemoFiles writes the embedded strategy specs and the scenario
// beside each other, as in the repository.
func writeDemoFiles(dir string) (scenario string, err error) {
	files := filepath.Join(dir, "files")
	if err := os.MkdirAll(filepath.Join(files, "gamedays"), 0o755); err != nil {
		return "", err
	}
	for _, name := range []string{"backup-restore.yaml", "pilot-light.yaml", "warm-standby.yaml", "active-active.yaml"} {
		b, err := examples.Read(name)
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(files, name), b, 0o644); err != nil {
			return "", err
		}
	}
	b, err := gamedays.Read(demoScenario)
	if err != nil {
		return "", err
	}
	scenario = filepath.Join(files, "gamedays", demoScenario)
	return scenario, os.WriteFile(scenario, b, 0o644)
}

// demoTable is the spectrum: one line per strategy that ran.
func demoTable(reports []*gameday.Report, specs string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STRATEGY\tRPO (LOST WRITES)\tRTO\tSTANDBY INSTANCES BEFORE\tOBJECTIVES MET")
	for _, r := range reports {
		f := r.Figures
		rto := "no write after the loss"
		if f.RTOSeconds != nil {
			rto = fmt.Sprintf("%.1fs", *f.RTOSeconds)
		}
		met := "yes"
		if !r.Passed {
			met = "no"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Strategy, f.RPOText(), rto, standbyInstances(specs, r.Strategy), met)
	}
	tw.Flush()
	return b.String()
}

// standbyInstances is the number of service instances the strategy keeps
// running in the standby region, from its spec (the scale step's starting
// point; bench/region-failover counts them on the running topology).
func standbyInstances(specs, strategy string) string {
	t, err := spec.Load(filepath.Join(specs, strategy+".yaml"))
	if err != nil || len(t.Workloads) == 0 {
		return "?"
	}
	n := 0
	for _, s := range t.Workloads[0].Services {
		n += s.Replicas.Standby
	}
	return fmt.Sprint(n)
}
