package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/spec"
)

func newValidate() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "validate -f SPEC",
		Short: "Check a spec; print FILE:LINE: errors and exit 2 when it is wrong",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			t, err := spec.Load(file)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
				return &exitError{code: 2, err: fmt.Errorf("%s is not valid", file)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d regions, %d nodes, %d workloads)\n", file, len(t.Regions), len(t.Nodes()), len(t.Workloads))
			return nil
		},
	}
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file")
	return cmd
}
