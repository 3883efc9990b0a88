package main

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"erg"
)

func newGrainCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "grain",
		Short: "Create, list, open and remove grains (app instances)",
	}
	cmd.AddCommand(newGrainNewCmd(g), newGrainLsCmd(g), newGrainOpenCmd(g), newGrainRmCmd(g), newGrainLogCmd(g),
		newGrainRenameCmd(g), newGrainBackupCmd(g), newGrainRestoreCmd(g), newGrainTokenCmd(g), newGrainDiskCmd(g), newGrainGrantsCmd(g), newGrainLimitsCmd(g))
	return cmd
}

func newGrainNewCmd(g *globals) *cobra.Command {
	var title string
	cmd := &cobra.Command{
		Use:     "new APP",
		Short:   "Create a grain of APP and print a link that opens it",
		Long:    "Create a grain of APP (an app id or name) and print a one-time link that signs you in to it.\nThe link works once and expires in 5 minutes; 'erg grain open ID' makes a new one.",
		Example: `  erg grain new notes --title "Shopping list"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			gr, err := g.client().NewGrain(cmd.Context(), args[0], title)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, gr, func() {
				fmt.Fprintf(out, "created grain %s (%s: %q)\nopen it at:\n  %s\n", gr.ID, gr.AppName, gr.Title, gr.URL)
				if shell := shellURL(gr); shell != "" {
					fmt.Fprintf(out, "or in your node's pages, signed in:\n  %s\n", shell)
				}
			})
		},
	}
	cmd.Flags().StringVar(&title, "title", "", "the grain's title")
	return cmd
}

func newGrainOpenCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "open ID",
		Short: "Print a new one-time link that signs you in to a grain",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			gr, err := g.client().OpenGrain(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, gr, func() { fmt.Fprintln(out, gr.URL) })
		},
	}
}

func newGrainLsCmd(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List grains",
		Long: `List your grains and those shared with you; with --all (the node's owner only), every grain on the node
with its owner. For your own grains (and with --all, everyone's) it shows what each uses: CPU time of its
current run, or of its last run since the node started when stopped ("-": not run since), memory now and
its limit, and the size of its /var. Warnings say a grain is near a limit or a limit stopped it.
--json prints the API's JSON: "usage" holds cpuSeconds, memoryBytes, memoryPeakBytes, diskBytes, the
limits (memoryLimitBytes, processLimit, cpuPercent) and warnings.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				return listAllGrains(cmd, g)
			}
			gs, err := g.client().Grains(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, gs, func() {
				if len(gs) == 0 {
					fmt.Fprintln(out, "no grains yet: create one with 'erg grain new APP'")
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tAPP\tTITLE\tSTATE\tLAST USED\tCPU\tMEMORY\tDISK")
				for _, gr := range gs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", gr.ID, gr.AppName, gr.Title, runState(gr), ago(gr.LastUsed), usageCols(gr.Usage))
				}
				tw.Flush()
				printWarnings(out, gs)
			})
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "list every grain on the node, anyone's (owner only)")
	return cmd
}

func listAllGrains(cmd *cobra.Command, g *globals) error {
	gs, err := g.client().AllGrains(cmd.Context())
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	return g.print(out, gs, func() {
		if len(gs) == 0 {
			fmt.Fprintln(out, "no grains on this node")
			return
		}
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tOWNER\tAPP\tTITLE\tSTATE\tLAST USED\tCPU\tMEMORY\tDISK")
		all := make([]erg.Grain, 0, len(gs))
		for _, gr := range gs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", gr.ID, gr.Owner, gr.AppName, gr.Title, runState(gr.Grain), ago(gr.LastUsed), usageCols(gr.Usage))
			all = append(all, gr.Grain)
		}
		tw.Flush()
		printWarnings(out, all)
	})
}

func runState(gr erg.Grain) string {
	if gr.Running {
		return "running"
	}
	return "stopped"
}

func newGrainRmCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID...",
		Short: "Stop and delete grains with all their data",
		Long:  "Stop and delete grains with all their data. The node's owner (on the control socket) may delete anyone's grain; see 'erg grain ls --all'.",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			var removed []string
			for _, id := range args {
				if err := g.client().RemoveGrain(cmd.Context(), id); err != nil {
					return fmt.Errorf("remove %s: %w", id, err)
				}
				removed = append(removed, id)
				if !g.json {
					fmt.Fprintf(out, "removed grain %s\n", id)
				}
			}
			if g.json {
				return g.print(out, map[string]any{"removed": removed}, nil)
			}
			return nil
		},
	}
}

func newGrainLogCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "log ID",
		Short: "Print a grain's recent output (stdout and stderr, last 256 KiB)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := g.client().GrainLog(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			cmd.OutOrStdout().Write(log)
			return nil
		},
	}
}

func newGrainRenameCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rename ID TITLE",
		Short: "Change a grain's title",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			gr, err := g.client().RenameGrain(cmd.Context(), args[0], args[1])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, gr, func() { fmt.Fprintf(out, "grain %s is now %q\n", gr.ID, gr.Title) })
		},
	}
}

func newGrainBackupCmd(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:     "backup ID",
		Short:   "Save a zip of a grain's data and metadata",
		Long:    "Save a zip of the grain's /var and its metadata; 'erg grain restore' makes a new grain from it.",
		Example: `  erg grain backup abcd1234 -o notes.zip`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output == "" {
				output = args[0] + ".zip"
			}
			err := writeFileAtomic(output, func(f *os.File) error {
				return g.client().BackupGrain(cmd.Context(), args[0], f)
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, map[string]string{"grain": args[0], "file": output}, func() {
				fmt.Fprintf(out, "saved grain %s to %s\n", args[0], output)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "the zip to write (default ID.zip)")
	return cmd
}

func newGrainRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "restore FILE",
		Short: "Make a new grain from a backup zip",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			gr, err := g.client().RestoreGrain(cmd.Context(), f)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, gr, func() { fmt.Fprintf(out, "restored as grain %s (%s: %q)\n", gr.ID, gr.AppName, gr.Title) })
		},
	}
}

// shellURL is the grain's page in the node's web UI, derived from its
// sign-in link on the grain's own origin (g-<id>.<domain>:port).
func shellURL(gr erg.Grain) string {
	u, err := url.Parse(gr.URL)
	if err != nil {
		return ""
	}
	host, ok := strings.CutPrefix(u.Host, "g-"+gr.ID+".")
	if !ok {
		return ""
	}
	return u.Scheme + "://" + host + "/grains/" + gr.ID
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Format("2006-01-02")
}
