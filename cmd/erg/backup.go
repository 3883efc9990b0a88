package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"erg"
)

func newBackupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Scheduled, encrypted backups of every grain and of the node",
		Long: `erg backs up every grain and the node itself (users, apps, grains, shares,
friends, its identity) on a schedule (daily by default), incrementally and
encrypted, to the destinations you add: directories (a USB disk) and
friends' nodes that offer you space.

First make a recovery code ('erg backup code') and write it down: backups
can be read only with it. Then add a destination ('erg backup dest add
/mnt/usb/erg'). 'erg restore' brings a whole node back onto a new machine.`,
	}
	cmd.AddCommand(newBackupCodeCmd(g), newBackupNowCmd(g), newBackupLsCmd(g), newBackupStatusCmd(g),
		newBackupRestoreCmd(g), newBackupDestCmd(g), newBackupSetCmd(g), newBackupOfferCmd(g))
	return cmd
}

func newBackupCodeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "code",
		Short: "Make the recovery code backups are encrypted for (shown once)",
		Long: `Make the recovery code. The node keeps only what it needs to write backups;
reading one needs the code, so write it down and keep it away from this
machine. Making a new code means backups made after it need the new code;
destinations that hold backups of the old one must be replaced.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client().NewRecoveryCode(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, c, func() {
				fmt.Fprintf(out, "recovery code (write it down; it is not shown again):\n\n    %s\n\n", c.Code)
			})
		},
	}
}

func newBackupNowCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "now",
		Short: "Back up everything now, and wait until it is done",
		Long: `Back up the node and every grain to every destination now, and wait
until it is done, printing on stderr how far it has come (the grain worked
on, its changed files and bytes sent of the total). With --json, stdout is
the API's answer and nothing else is printed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := g.client()
			stop := func() {}
			if !g.json {
				stop = watchProgress(cmd.Context(), c, cmd.ErrOrStderr())
			}
			run, err := c.BackupNow(cmd.Context())
			stop()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			err = g.print(out, run, func() {
				fmt.Fprintf(out, "backed up %d sources in %s\n", run.Sources, run.Finished.Sub(run.Started).Round(time.Millisecond))
				for d, n := range run.Written {
					fmt.Fprintf(out, "  %s: %s written\n", d, humanSize(n))
				}
				for _, f := range run.Failed {
					fmt.Fprintf(out, "  failed: %s\n", f)
				}
			})
			if err == nil && len(run.Failed) > 0 {
				err = fmt.Errorf("%d parts of the backup failed", len(run.Failed))
			}
			return err
		},
	}
}

func newBackupLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the snapshots kept at the destinations",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			snaps, err := g.client().BackupSnapshots(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, snaps, func() {
				if len(snaps) == 0 {
					fmt.Fprintln(out, "no snapshots yet: 'erg backup now' makes one")
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "SNAPSHOT\tOF\tTITLE\tTIME\tSIZE\tAT")
				for _, s := range snaps {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Source, s.Title, s.Time.Local().Format("2006-01-02 15:04:05"), humanSize(s.Size), strings.Join(s.At, ", "))
				}
				tw.Flush()
			})
		},
	}
}

func newBackupStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the schedule, the destinations and the last backup of each grain",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			st, err := g.client().BackupStatus(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, st, func() { printBackupStatus(out, st) })
		},
	}
}

func printBackupStatus(out io.Writer, st erg.BackupStatus) {
	if st.Warning != "" {
		fmt.Fprintf(out, "warning: %s\n", st.Warning)
	}
	fmt.Fprintf(out, "every %s, keeping the last %d, %d daily, %d weekly, %d monthly\n", st.Every, st.Retention.Last, st.Retention.Daily, st.Retention.Weekly, st.Retention.Monthly)
	if st.Progress != "" {
		fmt.Fprintf(out, "now: %s\n", st.Progress)
	}
	fmt.Fprintf(out, "last run: %s; next: %s\n\n", when(st.LastRun), when(st.NextRun))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tID\tLAST OK\tUSED\tSTATE")
	for _, d := range st.Destinations {
		state := "ok"
		if d.Error != "" {
			state = d.Error
		}
		used := humanSize(d.Used)
		if d.Quota > 0 {
			used += " of " + humanSize(d.Quota)
		}
		fmt.Fprintf(tw, "%s (%s)\t%s\t%s\t%s\t%s\n", d.Name, d.Kind, d.ID, when(d.LastOK), used, state)
	}
	tw.Flush()
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SOURCE\tTITLE\tLAST OK\tSIZE\tPAUSE")
	for _, s := range st.Sources {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Source, s.Title, when(s.LastOK), humanSize(s.Size), time.Duration(s.Pause).Round(time.Microsecond))
	}
	tw.Flush()
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// readCode takes the recovery code from $ERG_RECOVERY_CODE or a line of
// stdin, so it never sits in the shell's history.
func readCode(cmd *cobra.Command) (string, error) {
	if c := os.Getenv("ERG_RECOVERY_CODE"); c != "" {
		return c, nil
	}
	fmt.Fprint(cmd.ErrOrStderr(), "recovery code: ")
	line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
	if err != nil && line == "" {
		return "", errors.New("no recovery code: type it, or set ERG_RECOVERY_CODE")
	}
	return strings.TrimSpace(line), nil
}

func newBackupRestoreCmd(g *globals) *cobra.Command {
	var snapshot string
	var over bool
	cmd := &cobra.Command{
		Use:   "restore GRAIN",
		Short: "Restore a grain from its backups (asks for the recovery code)",
		Long: `Restore a grain from the newest snapshot that reads whole (or --snapshot
NAME from 'erg backup ls') as a new grain, or with --over over the grain
itself. The recovery code is read from stdin or $ERG_RECOVERY_CODE. How
far it has come is printed on stderr (not with --json).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := readCode(cmd)
			if err != nil {
				return err
			}
			c := g.client()
			stop := func() {}
			if !g.json {
				stop = watchProgress(cmd.Context(), c, cmd.ErrOrStderr())
			}
			res, err := c.BackupRestore(cmd.Context(), erg.BackupRestoreRequest{Code: code, Grain: args[0], Snapshot: snapshot, Over: over})
			stop()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, res, func() {
				fmt.Fprintf(out, "restored %q (%s) from the snapshot of %s\n", res.Grain.Title, res.Grain.ID, res.Time.Local().Format("2006-01-02 15:04:05"))
				for _, p := range res.Problems {
					fmt.Fprintf(out, "  worked around: %s\n", p)
				}
			})
		},
	}
	cmd.Flags().StringVar(&snapshot, "snapshot", "", "the snapshot to restore (default the newest)")
	cmd.Flags().BoolVar(&over, "over", false, "restore over the grain itself instead of as a new grain")
	return cmd
}

func newBackupDestCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "dest", Short: "Add or remove places backups go"}
	var friend string
	add := &cobra.Command{
		Use:   "add [DIR]",
		Short: "Back up to a directory (absolute path), or to a friend with --friend NAME",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := erg.BackupDestinationRequest{Friend: friend}
			if len(args) == 1 {
				req.Dir = args[0]
			}
			d, err := g.client().AddBackupDestination(cmd.Context(), req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, d, func() { fmt.Fprintf(out, "backing up to %s (id %s)\n", d.Name, d.ID) })
		},
	}
	add.Flags().StringVar(&friend, "friend", "", "a friend who offered this node space")
	rm := &cobra.Command{
		Use:   "rm ID",
		Short: "Stop backing up to a destination (what is kept there stays)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.client().RemoveBackupDestination(cmd.Context(), args[0])
		},
	}
	cmd.AddCommand(add, rm)
	return cmd
}

func newBackupSetCmd(g *globals) *cobra.Command {
	var every time.Duration
	var last, daily, weekly, monthly int
	cmd := &cobra.Command{
		Use:   "set",
		Short: "Set how often backups run and how many are kept",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in := erg.BackupSettings{Every: erg.Duration(every)}
			if cmd.Flags().Changed("last") || cmd.Flags().Changed("daily") || cmd.Flags().Changed("weekly") || cmd.Flags().Changed("monthly") {
				st, err := g.client().BackupStatus(cmd.Context())
				if err != nil {
					return err
				}
				r := st.Retention
				if cmd.Flags().Changed("last") {
					r.Last = last
				}
				if cmd.Flags().Changed("daily") {
					r.Daily = daily
				}
				if cmd.Flags().Changed("weekly") {
					r.Weekly = weekly
				}
				if cmd.Flags().Changed("monthly") {
					r.Monthly = monthly
				}
				in.Retention = &r
			}
			st, err := g.client().SetBackupSettings(cmd.Context(), in)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, st, func() { printBackupStatus(out, st) })
		},
	}
	cmd.Flags().DurationVar(&every, "every", 0, "how often to back up (e.g. 24h, 6h)")
	cmd.Flags().IntVar(&last, "last", 0, "newest snapshots to keep whatever their age")
	cmd.Flags().IntVar(&daily, "daily", 0, "daily snapshots to keep")
	cmd.Flags().IntVar(&weekly, "weekly", 0, "weekly snapshots to keep")
	cmd.Flags().IntVar(&monthly, "monthly", 0, "monthly snapshots to keep")
	return cmd
}

func newBackupOfferCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "offer [FRIEND GB]",
		Short: "Keep up to GB of a friend's backups on this node (0 stops); alone, list the offers",
		Long: `Offer a friend space for their node's backups: 'erg backup offer bob 20'
keeps up to 20 GB for bob, enforced here. They arrive encrypted: this node
sees only sizes and dates, and gives them back only to bob's node (or to
the one bob's recovery code restores). 0 withdraws the offer and deletes
what was kept.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 0 && len(args) != 2 {
				return errors.New("give a friend and a size in GB, or nothing to list the offers")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			if len(args) == 2 {
				gb, err := strconv.ParseFloat(args[1], 64)
				if err != nil || gb < 0 {
					return fmt.Errorf("%q is not a size in GB", args[1])
				}
				return g.client().OfferBackupSpace(cmd.Context(), erg.BackupOfferRequest{Friend: args[0], Bytes: int64(gb * (1 << 30))})
			}
			offers, err := g.client().BackupOffers(cmd.Context())
			if err != nil {
				return err
			}
			return g.print(out, offers, func() {
				if len(offers) == 0 {
					fmt.Fprintln(out, "no space offered to friends")
					return
				}
				tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "FRIEND\tUSED\tOFFERED\tLAST")
				for _, o := range offers {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Friend, humanSize(o.Used), humanSize(o.Quota), when(o.Modified))
				}
				tw.Flush()
			})
		},
	}
	return cmd
}
