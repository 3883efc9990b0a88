package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newUserCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Invite, list and remove the node's local users",
	}
	cmd.AddCommand(newUserInviteCmd(g), newUserLsCmd(g), newUserRmCmd(g))
	return cmd
}

func newUserInviteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "invite USERNAME",
		Short: "Make a one-time link with which a new user sets their password",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := g.client().InviteUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, inv, func() {
				fmt.Fprintf(out, "send this link to %s (it works once, until %s):\n  %s\n", inv.Username, inv.Expires.Local().Format("2006-01-02 15:04"), inv.URL)
			})
		},
	}
}

func newUserLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List users and open invites",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			users, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			invites, err := c.Invites(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, map[string]any{"users": users, "invites": invites}, func() {
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "USERNAME\tSTATE\tSINCE")
				for _, u := range users {
					state := "user"
					if u.Owner {
						state = "owner"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Username, state, u.Created.Local().Format("2006-01-02"))
				}
				for _, inv := range invites {
					fmt.Fprintf(tw, "%s\tinvited (until %s)\t%s\n", inv.Username, inv.Expires.Local().Format("2006-01-02"), inv.Created.Local().Format("2006-01-02"))
				}
				tw.Flush()
			})
		},
	}
}

func newUserRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm USERNAME",
		Short: "Remove a user, with their grains, or cancel their invite",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			out := cmd.OutOrStdout()
			invites, err := c.Invites(cmd.Context())
			if err != nil {
				return err
			}
			for _, inv := range invites {
				if inv.Username == args[0] {
					if err := c.CancelInvite(cmd.Context(), inv.ID); err != nil {
						return err
					}
					return g.print(out, map[string]string{"cancelledInvite": inv.Username}, func() {
						fmt.Fprintf(out, "cancelled the invite for %s\n", inv.Username)
					})
				}
			}
			if err := c.RemoveUser(cmd.Context(), args[0]); err != nil {
				return err
			}
			return g.print(out, map[string]string{"removed": args[0]}, func() {
				fmt.Fprintf(out, "removed user %s and their grains\n", args[0])
			})
		},
	}
}
