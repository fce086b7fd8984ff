package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline"
	"github.com/lifeline-dr/lifeline/gameday"
	"github.com/lifeline-dr/lifeline/local"
	"github.com/lifeline-dr/lifeline/plan"
	"github.com/lifeline-dr/lifeline/spec"
)

func newPlan() *cobra.Command {
	var file, dataDir, out string
	var asJSON, document bool
	cmd := &cobra.Command{
		Use:   "plan [-f SPEC] [--data-dir DIR] [--json] [--document [--out FILE]]",
		Short: "Weigh each DR strategy's expected RPO, RTO, standing cost and yearly loss; recommend one; write the continuity plan",
		Long: `For every workload and every strategy (multi-zone alone too): the expected RPO and RTO of each
risk the spec's impact section considers, measured by the data directory's game days where there
are some (with the run's date), else estimated from the settings; the standing cost of what the
strategy keeps in the standby regions; the expected yearly loss; and the recommended strategy
with its reason.

The spec is -f SPEC, or the one a data directory's topology was built from; the game-day
history is the data directory's (with -f, only when --data-dir is given). When that topology
runs, the last restore drill and each standby region's readiness are read from it too.

--document writes the continuity plan: Markdown on stdout, or --out FILE (HTML when FILE ends
in .html, a self-contained page; Markdown otherwise).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var t *lifeline.Topology
			var err error
			running := !cmd.Flags().Changed("file")
			if running {
				if t, err = local.LoadTopology(dataDir); err != nil {
					return &exitError{code: 2, err: fmt.Errorf("%w (or give the spec: lifeline plan -f SPEC)", err)}
				}
			} else if t, err = spec.Load(file); err != nil {
				return &exitError{code: 2, err: err}
			}
			var facts map[string]plan.Facts
			if running || cmd.Flags().Changed("data-dir") {
				history, err := plan.LoadHistory(dataDir)
				if err != nil {
					return err
				}
				facts = map[string]plan.Facts{}
				for _, w := range t.Workloads {
					facts[w.Name] = plan.Facts{History: history}
				}
				if running {
					facts = readRunning(cmd, dataDir, t, history, facts)
				}
			}
			get := func(w *lifeline.Workload) plan.Facts { return facts[w.Name] }
			p := plan.Build(t, get, time.Now())
			w := cmd.OutOrStdout()
			if !document {
				if asJSON {
					enc := json.NewEncoder(w)
					enc.SetIndent("", "  ")
					return enc.Encode(p)
				}
				return p.WriteTable(w)
			}
			doc, err := plan.NewDocument(t, p, get)
			if err != nil {
				return err
			}
			if out == "" {
				_, err := fmt.Fprint(w, doc.Markdown())
				return err
			}
			body := []byte(doc.Markdown())
			if strings.EqualFold(filepath.Ext(out), ".html") {
				if body, err = doc.HTML(); err != nil {
					return err
				}
			}
			if err := os.WriteFile(out, body, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(w, "wrote %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file (default: the data directory's topology)")
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory (game-day history, restore drill, readiness)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&document, "document", false, "write the continuity plan instead")
	cmd.Flags().StringVar(&out, "out", "", "with --document: the file to write (.html for HTML, else Markdown)")
	return cmd
}

// readRunning adds what a running topology knows: the restore drill and
// readiness. A topology that does not answer leaves them unknown.
func readRunning(cmd *cobra.Command, dataDir string, t *lifeline.Topology, history []gameday.HistoryEntry, facts map[string]plan.Facts) map[string]plan.Facts {
	_, s, err := openStore(dataDir)
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: the control store cannot be reached (%v): no restore drill or readiness\n", err)
		return facts
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
	defer cancel()
	read, err := plan.ReadFacts(ctx, s, t, history)
	if err != nil {
		fmt.Fprintf(cmd.ErrOrStderr(), "note: the topology did not answer (%v): no restore drill or readiness\n", err)
		return facts
	}
	return read
}
