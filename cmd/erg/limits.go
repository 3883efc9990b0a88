package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"erg"
	"erg/webui"
)

func newGrainLimitsCmd(g *globals) *cobra.Command {
	var cpuPercent int
	cmd := &cobra.Command{
		Use:   "limits GRAIN",
		Short: "Show or set one grain's limits (the node's owner only)",
		Long: `Show one grain's limits and what it uses, or set the node owner's own limits for it, over
its app's (the manifest's limits) and the node's defaults (erg run --grain-cpu-percent).

  --cpu-percent N   a CPU ceiling in percent of one core: 50 is half a core, 200 two cores.
                    0 goes back to the default: the app's ceiling, else the node's, else none.

A limit applies from the grain's next start: stop it (or let it go idle) for it to take effect.
The bound on its /var is set with 'erg grain disk'.
Without a flag nothing changes and the grain's limits and usage are printed.`,
		Example: `  erg grain limits 5fq2c… --cpu-percent 50
  erg grain limits 5fq2c… --cpu-percent 0     # back to the default
  erg grain limits 5fq2c… --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var req erg.GrainLimitsRequest
			if cmd.Flags().Changed("cpu-percent") {
				req.CPUPercent = &cpuPercent
			}
			gr, err := g.client().SetGrainLimits(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return g.print(out, gr, func() { printLimits(out, gr) })
		},
	}
	cmd.Flags().IntVar(&cpuPercent, "cpu-percent", 0, "CPU ceiling in percent of one core (100: one core); 0: back to the app's or the node's default")
	return cmd
}

// printLimits shows a grain's limits and usage for a person.
func printLimits(out io.Writer, gr erg.Grain) {
	u := gr.Usage
	fmt.Fprintf(out, "grain %s (%s: %q), %s\n", gr.ID, gr.AppName, gr.Title, runState(gr))
	if u == nil {
		return
	}
	ceiling := "none"
	if u.CPUPercent > 0 {
		ceiling = strconv.Itoa(u.CPUPercent) + "% of one core"
	}
	how := "the app's or the node's default"
	if u.CPUPercentSet > 0 {
		how = "set for this grain"
	}
	fmt.Fprintf(out, "  CPU ceiling  %s (%s)\n", ceiling, how)
	fmt.Fprintf(out, "  memory       %s\n", limitText(u.MemoryLimitBytes))
	fmt.Fprintf(out, "  processes    %d\n", u.ProcessLimit)
	if u.DiskLimitBytes > 0 {
		how := "the node measures it and stops the grain when over"
		if u.DiskEnforced {
			how = "the kernel enforces it"
		}
		fmt.Fprintf(out, "  disk         %s (%s; set with 'erg grain disk')\n", webui.FormatSize(u.DiskLimitBytes), how)
	}
	fmt.Fprintf(out, "  uses         %s\n", usageText(u))
	for _, w := range u.Warnings {
		fmt.Fprintf(out, "  warning      %s\n", w)
	}
}

func limitText(n int64) string {
	if n == 0 {
		return "no limit"
	}
	return webui.FormatSize(n)
}

// usageText is a grain's CPU time, memory and disk use in one line.
func usageText(u *erg.GrainUsage) string {
	if u == nil {
		return "-"
	}
	cpu, mem := cpuAndMemory(u)
	return fmt.Sprintf("CPU %s, memory %s of %s, disk %s", cpu, mem, limitText(u.MemoryLimitBytes), webui.FormatSize(u.DiskBytes))
}

// cpuAndMemory are a grain's CPU time and memory in use, "-" for what is
// not known (a grain not run since the node started, or not running).
func cpuAndMemory(u *erg.GrainUsage) (cpu, mem string) {
	cpu, mem = "-", "-"
	if u.Measured {
		cpu = strconv.FormatFloat(u.CPUSeconds, 'f', 2, 64) + " s"
	}
	if u.MemoryBytes > 0 {
		mem = webui.FormatSize(u.MemoryBytes)
	}
	return cpu, mem
}

// usageCols are the CPU, MEMORY and DISK columns of 'erg grain ls'.
func usageCols(u *erg.GrainUsage) string {
	if u == nil {
		return "\t\t"
	}
	cpu, mem := cpuAndMemory(u)
	if u.MemoryLimitBytes > 0 {
		mem += "/" + webui.FormatSize(u.MemoryLimitBytes)
	}
	disk := webui.FormatSize(u.DiskBytes)
	if u.DiskLimitBytes > 0 {
		disk += "/" + webui.FormatSize(u.DiskLimitBytes)
	}
	return cpu + "\t" + mem + "\t" + disk
}

// printWarnings lists the grains near or stopped by a limit.
func printWarnings(out io.Writer, gs []erg.Grain) {
	for _, gr := range gs {
		if gr.Usage == nil {
			continue
		}
		for _, w := range gr.Usage.Warnings {
			fmt.Fprintf(out, "warning: grain %s (%s): %s\n", gr.ID, gr.Title, w)
		}
	}
}
