package main

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/internal/certs"
	"github.com/lifeline-dr/lifeline/spec"
)

func newCerts() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Make the certificate authority and the certificates of mutual TLS (etcd, PostgreSQL)",
		Long: `A topology's processes authenticate each other with certificates of one
authority: etcd members and their clients, PostgreSQL servers, replication and
Lifeline's own connections. lifeline up makes them all by itself; on real hosts,
run certs init once, certs issue, and copy to each host's data directory
certs/ca.crt and that host's certificate and key (node-REGION-ZONE, witness,
router; operator for the operator's machine).`,
	}
	cmd.AddCommand(newCertsInit(), newCertsIssue(), newCertsEnv())
	return cmd
}

func newCertsInit() *cobra.Command {
	var dataDir, name string
	cmd := &cobra.Command{
		Use:   "init [--data-dir DIR]",
		Short: "Make a certificate authority (DIR/certs/ca.crt, ca.key)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir := certs.Dir(dataDir)
			if _, err := certs.Init(dir, name); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "certificate authority made in %s; keep ca.key on this machine only\n", dir)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the certificates are kept (DIR/certs)")
	cmd.Flags().StringVar(&name, "name", "lifeline", "a name for the authority")
	return cmd
}

func newCertsIssue() *cobra.Command {
	var dataDir, file string
	cmd := &cobra.Command{
		Use:   "issue -f SPEC [--data-dir DIR] [NAME...]",
		Short: "Issue the certificates of a topology: every node, the witness, the router, the operator, each workload's services",
		Long: `Issues (or renews) a certificate for every identity of the spec, or only the
named ones (node-eu-west-a, witness, router, operator, app-orders). Node and
witness certificates hold their addresses, which clients check.`,
		RunE: func(cmd *cobra.Command, names []string) error {
			t, err := spec.Load(file)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			dir := certs.Dir(dataDir)
			ca, err := certs.Open(dir)
			if err != nil {
				return err
			}
			ids, err := certs.Identities(t)
			if err != nil {
				return err
			}
			var known []string
			for _, id := range ids {
				known = append(known, id.Name)
			}
			for _, n := range names {
				if !slices.Contains(known, n) {
					return fmt.Errorf("no identity %q in %s (identities: %s)", n, file, strings.Join(known, ", "))
				}
			}
			for _, id := range ids {
				if len(names) > 0 && !slices.Contains(names, id.Name) {
					continue
				}
				if err := ca.Issue(id); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%s\n", filepath.Join(dir, id.Name+".crt"), id.CommonName)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "where the authority and the certificates are (DIR/certs)")
	cmd.Flags().StringVarP(&file, "file", "f", "lifeline.yaml", "spec file")
	return cmd
}

func newCertsEnv() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "env [--data-dir DIR]",
		Short: "Print the libpq variables that make psql connect as the operator: eval \"$(lifeline certs env)\"",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			abs, err := filepath.Abs(certs.Dir(dataDir))
			if err != nil {
				return err
			}
			f, err := certs.Find(abs, certs.Operator)
			if err != nil {
				return err
			}
			for _, kv := range [][2]string{{"PGSSLMODE", "verify-full"}, {"PGSSLROOTCERT", f.CA}, {"PGSSLCERT", f.Cert}, {"PGSSLKEY", f.Key}} {
				fmt.Fprintf(cmd.OutOrStdout(), "export %s=%s\n", kv[0], shellQuote(kv[1]))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")
	return cmd
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
