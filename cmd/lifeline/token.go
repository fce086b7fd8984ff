package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/user"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeline-dr/lifeline/api"
	"github.com/lifeline-dr/lifeline/store"
)

// osActor names the person at this terminal for the audit log of the
// commands that talk to etcd directly (tokens are made before there is
// one to call the API with).
func osActor() string {
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli"
}

func newToken() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "token create|list|revoke",
		Short: "Make, list and revoke the API's tokens (viewer, operator, approver)",
		Long: `API tokens carry a role: viewer reads; operator also runs switchovers and failbacks,
changes routing controls, takes and verifies backups; approver also approves or rejects region
failovers and fails over by hand. A token is shown once, when it is made: only its SHA-256 is
stored (in etcd). These commands talk to the control store directly (the first token of a
distributed deployment is made this way, from a host that reaches etcd); every change is
written to the audit log.`,
	}
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", defaultDataDir, "the topology's data directory")

	var name, role string
	var replace, asJSON bool
	create := &cobra.Command{
		Use:   "create --name NAME --role viewer|operator|approver",
		Short: "Make a token and print it (once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r, err := api.ParseRole(role)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			s, ctx, done, err := tokenStore(cmd, dataDir)
			if err != nil {
				return err
			}
			defer done()
			tok, rec, err := api.CreateToken(ctx, s, name, r, osActor(), replace)
			if errors.Is(err, store.ErrTokenExists) {
				return &exitError{code: 3, err: err}
			}
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{"name": rec.Name, "role": rec.Role, "token": tok})
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "token %s (%s) made; it is shown this once: keep it (export %s=...)\n", rec.Name, rec.Role, api.TokenEnv)
			return nil
		},
	}
	create.Flags().StringVar(&name, "name", "", "the token's name (the audit log names it)")
	create.Flags().StringVar(&role, "role", "viewer", "viewer, operator or approver")
	create.Flags().BoolVar(&replace, "replace", false, "replace a token of that name")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	_ = create.MarkFlagRequired("name")

	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List the tokens (names and roles; never the tokens)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, ctx, done, err := tokenStore(cmd, dataDir)
			if err != nil {
				return err
			}
			defer done()
			m, err := s.Tokens(ctx)
			if err != nil {
				return err
			}
			toks := make([]store.Token, 0, len(m))
			for _, t := range m {
				t.SHA256 = t.SHA256[:min(12, len(t.SHA256))]
				toks = append(toks, t)
			}
			sort.Slice(toks, func(i, j int) bool { return toks[i].Name < toks[j].Name })
			if listJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(toks)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tROLE\tCREATED\tBY\tSHA-256")
			for _, t := range toks {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s…\n", t.Name, t.Role, t.Created.Local().Format("2006-01-02 15:04:05"), t.CreatedBy, t.SHA256)
			}
			if len(toks) == 0 {
				fmt.Fprintln(tw, "(no tokens: lifeline token create --name NAME --role viewer)")
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")

	revoke := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a token: every agent refuses it as soon as it hears of it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, ctx, done, err := tokenStore(cmd, dataDir)
			if err != nil {
				return err
			}
			defer done()
			found, err := s.RevokeToken(ctx, args[0], osActor())
			if err != nil {
				return err
			}
			if !found {
				return &exitError{code: 3, err: fmt.Errorf("no token named %q", args[0])}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

// tokenStore connects to the control store for a token command, with the
// command's deadline; done releases both.
func tokenStore(cmd *cobra.Command, dataDir string) (*store.Store, context.Context, func(), error) {
	_, s, err := openStore(dataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
	return s, ctx, func() { cancel(); s.Close() }, nil
}
