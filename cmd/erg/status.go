package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running node's address, sandbox mode and grains",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := g.client().Status(ctx)
			if err != nil {
				return err
			}
			apps, err := g.client().Apps(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, struct {
				Status any `json:"status"`
				Apps   any `json:"apps"`
			}{s, apps}, func() {
				fmt.Fprintf(out, "node      %s\n", s.NodeID)
				if s.Name != "" {
					fmt.Fprintf(out, "name      %s (to friends)\n", s.Name)
				}
				fmt.Fprintf(out, "web       %s\n", s.URL)
				fmt.Fprintf(out, "data      %s\n", s.DataDir)
				fmt.Fprintf(out, "sandbox   %s, cgroups %s\n", s.Sandbox, s.Cgroups)
				fmt.Fprintf(out, "grains    %d (%d running, idle stop after %s)\n", s.Grains, s.Running, s.GrainIdle)
				fmt.Fprintf(out, "uptime    %s, version %s\n", s.Uptime, s.Version)
				if s.PeerID != "" {
					fmt.Fprintf(out, "peer      %s\n", s.PeerID)
					for _, a := range s.P2PAddrs {
						fmt.Fprintf(out, "  listen  %s\n", a)
					}
					fmt.Fprintf(out, "p2p       %d peers connected, %d in the routing table\n", s.Peers, s.RoutingTable)
					if s.ReachabilityText != "" {
						fmt.Fprintf(out, "reach     %s\n", s.ReachabilityText)
						for _, a := range s.ReachableAddrs {
							fmt.Fprintf(out, "  at      %s\n", a)
						}
					}
				}
				fmt.Fprintf(out, "apps      %d\n", len(apps))
				for _, a := range apps {
					fmt.Fprintf(out, "  %-12s %-8s %s\n", a.ID, a.DisplayVersion, a.Name)
				}
			})
		},
	}
}
