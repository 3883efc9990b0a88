package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"erg"
)

func newShareCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "share",
		Short: "Share grains by link, list and revoke shares",
	}
	cmd.AddCommand(newShareNewCmd(g), newShareLsCmd(g), newShareRmCmd(g))
	return cmd
}

func newShareNewCmd(g *globals) *cobra.Command {
	var req erg.ShareRequest
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "new GRAIN",
		Short: "Make a sharing link to a grain with a role",
		Long: `Make a sharing link to a grain. Whoever opens it while signed in to this
node gets the grain in "Shared with me" with the role (the app's manifest
names the roles, such as viewer or editor). --user keeps the link for one
user; --anonymous lets people use it without signing in. --friend delivers
the share to a friend's node instead (see 'erg friend'), for its owner or
for one of its users (--user).`,
		Example: `  erg share new abcd1234 --role viewer
  erg share new abcd1234 --role editor --user bob --expires 168h
  erg share new abcd1234 --role editor --friend carol-node --user dave`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.ExpiresIn = int64(expires / time.Second)
			if req.Friend != "" {
				req.FriendUser, req.ForUser = req.ForUser, ""
			}
			s, err := g.client().NewShare(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, s, func() {
				if s.Friend != "" {
					fmt.Fprintf(out, "share %s (%s) delivered to %s\n", s.ID, s.Role, friendTarget(s))
					return
				}
				fmt.Fprintf(out, "share %s (%s):\n  %s\n", s.ID, s.Role, s.URL)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Role, "role", "viewer", "the role people with the link get")
	f.StringVar(&req.ForUser, "user", "", "only this user may use the share (with --friend: a user on the friend's node)")
	f.StringVar(&req.Friend, "friend", "", "deliver the share to this friend's node")
	f.BoolVar(&req.Anonymous, "anonymous", false, "the link works without signing in (the grain sees no name)")
	f.StringVar(&req.Label, "label", "", "a note for yourself")
	f.DurationVar(&expires, "expires", 0, "the link stops working after this long (default never)")
	return cmd
}

func newShareLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls GRAIN",
		Aliases: []string{"list"},
		Short:   "List a grain's shares",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			shares, err := g.client().Shares(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, shares, func() {
				if len(shares) == 0 {
					fmt.Fprintln(out, "not shared: make a link with 'erg share new "+args[0]+"'")
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tROLE\tFOR\tEXPIRES\tOPENED BY\tLABEL")
				for _, s := range shares {
					who := "anyone signed in"
					switch {
					case s.ForUser != "":
						who = s.ForUser
					case s.Anonymous:
						who = "anyone"
					}
					if s.Friend != "" {
						who = friendTarget(s)
					}
					exp := "never"
					if !s.Expires.IsZero() {
						exp = s.Expires.Local().Format("2006-01-02 15:04")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Role, who, exp, strings.Join(s.Holders, ","), s.Label)
				}
				tw.Flush()
			})
		},
	}
}

func newShareRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm SHARE...",
		Short: "Revoke shares: their links stop working and open sessions end at once",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			for _, id := range args {
				if err := g.client().RevokeShare(cmd.Context(), id); err != nil {
					return fmt.Errorf("revoke %s: %w", id, err)
				}
				if !g.json {
					fmt.Fprintf(out, "revoked share %s\n", id)
				}
			}
			if g.json {
				return g.print(out, map[string]any{"revoked": args}, nil)
			}
			return nil
		},
	}
}

// friendTarget names who a share to a friend's node is for.
func friendTarget(s erg.Share) string {
	if s.FriendUser != "" {
		return s.FriendUser + "@" + s.Friend
	}
	return "node " + s.Friend
}
