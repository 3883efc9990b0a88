package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newFriendCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "friend",
		Short: "Befriend other nodes to share grains with them",
		Long: `Friends are other erg nodes. Your node and a friend's find each other over
libp2p (the DHT when stored addresses fail), and you can share grains with
a friend's node with 'erg share new GRAIN --friend NAME'.`,
	}
	cmd.AddCommand(newFriendInviteCmd(g), newFriendAddCmd(g), newFriendLsCmd(g), newFriendRmCmd(g))
	return cmd
}

func newFriendInviteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "invite",
		Short: "Make a one-time invite code for another node's owner",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			inv, err := g.client().NewFriendInvite(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, inv, func() {
				fmt.Fprintf(out, "give this code to your friend; they run 'erg friend add CODE' (it works once, until %s):\n%s\n",
					inv.Expires.Local().Format("2006-01-02 15:04"), inv.Code)
			})
		},
	}
}

func newFriendAddCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "add CODE",
		Short: "Become friends with the node that made an invite code",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := g.client().AddFriend(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, f, func() {
				fmt.Fprintf(out, "now friends with %s (%s)\n", f.Name, f.Peer)
			})
		},
	}
}

func newFriendLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List friends and whether they are online",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			fs, err := g.client().Friends(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, fs, func() {
				if len(fs) == 0 {
					fmt.Fprintln(out, "no friends yet: make an invite with 'erg friend invite'")
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tSTATUS\tPATH\tPEER")
				for _, f := range fs {
					status := "offline"
					if f.Online {
						status = "online"
					}
					path := f.Path
					if path == "" {
						path = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Name, status, path, f.Peer)
				}
				tw.Flush()
			})
		},
	}
}

func newFriendRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Stop being friends: shares to that node are revoked, its shares forgotten",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := g.client().RemoveFriend(cmd.Context(), args[0]); err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, map[string]string{"removed": args[0]}, func() {
				fmt.Fprintf(out, "no longer friends with %s\n", args[0])
			})
		},
	}
}
