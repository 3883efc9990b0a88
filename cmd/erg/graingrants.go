package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newGrainGrantsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grants",
		Short: "List and revoke a grain's powerbox connections to other grains",
		Long: `A grant is what the powerbox makes when a user picks a grain for another
grain's request (the to-do app asking for a file drop, say): the requesting
grain's server then reaches the picked grain through its bridge, with the
role the user chose, on that user's behalf. The grain menu's Connections
lists the same grants.

A grant ends by itself when the user who made it loses their role on either
grain, or when either grain is removed; revoking ends it at once, cutting
requests in flight. The user who made a grant and the owners of either grain
may revoke it.`,
	}
	cmd.AddCommand(newGrainGrantsLsCmd(g), newGrainGrantsRmCmd(g))
	return cmd
}

func newGrainGrantsLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls GRAIN",
		Aliases: []string{"list"},
		Short:   "List the grants a grain holds and those made to it",
		Example: `  erg grain grants ls abcd1234
  erg grain grants ls abcd1234 --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			gs, err := g.client().Grants(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, gs, func() {
				if len(gs) == 0 {
					fmt.Fprintln(out, "no connections: a grain asks for one through the powerbox, and a user picks")
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tFROM\tTO\tROLE\tBY\tMADE\tLABEL")
				for _, gr := range gs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", gr.ID, orID(gr.RequesterTitle, gr.Requester),
						orID(gr.TargetTitle, gr.Target), gr.Role, gr.User, gr.Created.Local().Format("2006-01-02 15:04"), gr.Label)
				}
				tw.Flush()
			})
		},
	}
}

// orID is a grain's title, or its id when the caller may not see it.
func orID(title, id string) string {
	if title == "" {
		return id
	}
	return title + " (" + id + ")"
}

func newGrainGrantsRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm GRANT...",
		Short: "Revoke grants: their next use is refused and open requests through them are cut",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			for _, id := range args {
				if err := g.client().RevokeGrant(cmd.Context(), id); err != nil {
					return fmt.Errorf("revoke %s: %w", id, err)
				}
			}
			return g.print(out, map[string][]string{"revoked": args}, func() {
				for _, id := range args {
					fmt.Fprintf(out, "revoked grant %s\n", id)
				}
			})
		},
	}
}
