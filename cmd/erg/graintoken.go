package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"erg"
)

func newGrainTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make, list and revoke a grain's API tokens (for DAV clients, git, scripts)",
		Long: `A grain API token lets a program that is not a browser use one grain's API
with one of its app's roles. The program sends it to the node's API origin
(such as http://api.localhost:6080) as
  Authorization: Bearer TOKEN
or, for clients that only do Basic auth (many CalDAV and WebDAV clients),
as the password with any user name. The request's path goes below the
path the app's manifest names as its API (apiPath); apps without one take
no tokens. The grain sees the token's role, and no user name unless the
token was made for a user (--user).

These are not the tokens of 'erg token', which act as you on the node's
own JSON API.`,
	}
	cmd.AddCommand(newGrainTokenNewCmd(g), newGrainTokenLsCmd(g), newGrainTokenRmCmd(g))
	return cmd
}

func newGrainTokenNewCmd(g *globals) *cobra.Command {
	var req erg.GrainTokenRequest
	var expires time.Duration
	cmd := &cobra.Command{
		Use:   "new GRAIN",
		Short: "Make an API token for a grain (it is shown once)",
		Example: `  erg grain token new abcd1234 --role viewer --label "backup script"
  erg grain token new abcd1234 --role editor --user bob --expires 720h
  curl -H "Authorization: Bearer $TOKEN" http://api.localhost:6080/`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.ExpiresIn = int64(expires / time.Second)
			t, err := g.client().NewGrainToken(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, t, func() {
				fmt.Fprintf(out, "token %s (%s) for grain %s; keep it secret, it is not shown again:\n  %s\n", t.ID, t.Role, t.GrainID, t.Token)
				fmt.Fprintf(out, "send it to %s as 'Authorization: Bearer TOKEN' (or as a Basic auth password)\n", t.URL)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Role, "role", "viewer", "the role the token's requests have (the app's manifest names its roles)")
	f.StringVar(&req.Label, "label", "", "what the token is for")
	f.StringVar(&req.ForUser, "user", "", "the grain is told the requests come from this local user (default: no name)")
	f.DurationVar(&expires, "expires", 0, "the token stops working after this long (default never)")
	return cmd
}

func newGrainTokenLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls GRAIN",
		Aliases: []string{"list"},
		Short:   "List a grain's API tokens",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ts, err := g.client().GrainTokens(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, ts, func() {
				if len(ts) == 0 {
					fmt.Fprintln(out, "no API tokens: make one with 'erg grain token new "+args[0]+"'")
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tROLE\tAS\tEXPIRES\tLAST USED\tLABEL")
				for _, t := range ts {
					as, exp, used := "-", "never", "never"
					if t.ForUser != "" {
						as = t.ForUser
					}
					if !t.Expires.IsZero() {
						exp = t.Expires.Local().Format("2006-01-02 15:04")
					}
					if !t.LastUsed.IsZero() {
						used = t.LastUsed.Local().Format("2006-01-02 15:04")
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Role, as, exp, used, t.Label)
				}
				tw.Flush()
			})
		},
	}
}

func newGrainTokenRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm TOKEN...",
		Short: "Revoke API tokens: the next request with one is refused, open ones are cut",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			for _, id := range args {
				if err := g.client().RevokeGrainToken(cmd.Context(), id); err != nil {
					return fmt.Errorf("revoke %s: %w", id, err)
				}
			}
			return g.print(out, map[string][]string{"revoked": args}, func() {
				for _, id := range args {
					fmt.Fprintf(out, "revoked token %s\n", id)
				}
			})
		},
	}
}
