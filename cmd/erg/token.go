package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make and revoke API tokens for using the node over HTTP",
		Long: `An API token lets a program (or erg itself, with ERG_URL and ERG_TOKEN set)
use the node's JSON API over HTTP as you, with
  Authorization: Bearer TOKEN`,
	}
	cmd.AddCommand(newTokenNewCmd(g), newTokenLsCmd(g), newTokenRmCmd(g))
	return cmd
}

func newTokenNewCmd(g *globals) *cobra.Command {
	var label string
	cmd := &cobra.Command{
		Use:   "new",
		Short: "Make an API token (it is shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.client().NewAPIToken(cmd.Context(), label)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, t, func() {
				fmt.Fprintf(out, "token %s (keep it secret; it is not shown again):\n  %s\n", t.ID, t.Token)
			})
		},
	}
	cmd.Flags().StringVar(&label, "label", "", "what the token is for")
	return cmd
}

func newTokenLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List your API tokens",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := g.client().APITokens(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, ts, func() {
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tCREATED\tLABEL")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Created.Local().Format("2006-01-02 15:04"), t.Label)
				}
				tw.Flush()
			})
		},
	}
}

func newTokenRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID",
		Short: "Revoke an API token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().RemoveAPIToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, map[string]string{"revoked": args[0]}, func() { fmt.Fprintf(out, "revoked token %s\n", args[0]) })
		},
	}
}
