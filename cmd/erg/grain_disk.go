package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"erg"
)

func newGrainDiskCmd(g *globals) *cobra.Command {
	var mb int
	var reset bool
	cmd := &cobra.Command{
		Use:   "disk ID",
		Short: "Show a grain's disk use and bound, or (the node's owner) change the bound",
		Long: `Show what a grain keeps in /var and how much it may keep.

The bound is the app's limits.diskMB, else the node's --grain-disk-mb (1 GiB
by default). The node's owner may set another for one grain with --mb, or go
back to the app's or the node's with --default; it applies from the grain's
next start, and a bound below what the grain keeps is refused.

When the node runs as root each grain's /var is its own file-system image, and
the kernel answers a write past the bound with "no space left on device".
Otherwise (or for a grain made before images) the node measures /var and stops
the grain when it is over; it cannot stop the writes themselves.`,
		Example: "  erg grain disk g-k3x\n  erg grain disk g-k3x --mb 4096\n  erg grain disk g-k3x --default",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			var d erg.GrainDisk
			var err error
			switch {
			case reset && cmd.Flags().Changed("mb"):
				return fmt.Errorf("--mb and --default: choose one")
			case reset:
				d, err = c.SetGrainDisk(cmd.Context(), args[0], nil)
			case cmd.Flags().Changed("mb"):
				d, err = c.SetGrainDisk(cmd.Context(), args[0], &mb)
			default:
				d, err = c.GrainDisk(cmd.Context(), args[0])
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, d, func() {
				how := "enforced by the kernel"
				if !d.Enforced {
					how = "measured by the node, which stops the grain when over"
				}
				fmt.Fprintf(out, "%s: %d MiB of %d MiB used (%s)\n", args[0], d.UsedBytes>>20, d.BoundBytes>>20, how)
			})
		},
	}
	cmd.Flags().IntVar(&mb, "mb", 0, "set the grain's bound, in MiB (the node's owner only)")
	cmd.Flags().BoolVar(&reset, "default", false, "go back to the app's or the node's bound (the node's owner only)")
	return cmd
}
