package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// CPU and I/O: each sandbox gets a CPU weight (its share when sandboxes
// compete for the cores), an optional CPU ceiling, and an I/O weight.
//
//	             cgroup v2                    cgroup v1
//	weight       cpu.weight (1..10000)        cpu.shares (weight*1024/100)
//	ceiling      cpu.max "quota period"       cpu.cfs_quota_us / cfs_period_us
//	I/O weight   io.weight "default N"        blkio.weight (10..1000)
//	             (or io.bfq.weight)           (or blkio.bfq.weight)
//
// The cpu controller is optional: where it is missing (not offered to a
// v2 subtree, or no writable v1 hierarchy) sandboxes run without CPU
// limits and the runner says so once. The I/O weight files exist only
// with an I/O controller that weighs (io cost or the BFQ scheduler); they
// are written where they exist.

// cfsPeriod is the CFS bandwidth period, in microseconds: 100 ms, the
// kernel's default.
const cfsPeriod = 100000

// optionalV1 finds the v1 cpu and blkio hierarchies' parent dirs for
// sandboxes, "" where there is none this process may use.
func (c *cgroups) optionalV1(own map[string]string, root bool) (notes []string) {
	for _, ctl := range []string{"cpu", "blkio"} {
		dir, err := c.v1Parent(own, ctl, root)
		if err != nil {
			notes = append(notes, err.Error())
			continue
		}
		if ctl == "cpu" {
			c.cpu = dir
		} else {
			c.blkio = dir
		}
	}
	return notes
}

// v1Parent is <hierarchy>/<own cgroup>/erg in controller ctl's v1
// hierarchy, created as root, or checked to be delegated otherwise; the
// cpu hierarchy's is <own cgroup> itself as root.
func (c *cgroups) v1Parent(own map[string]string, ctl string, root bool) (string, error) {
	hier := filepath.Join("/sys/fs/cgroup", ctl)
	var st unix.Statfs_t
	if err := unix.Statfs(hier, &st); err != nil || st.Type != cgroupV1Magic {
		return "", fmt.Errorf("no %s hierarchy at %s", ctl, hier)
	}
	p, ok := own[ctl]
	if !ok {
		return "", fmt.Errorf("no %s entry in /proc/self/cgroup", ctl)
	}
	dir := filepath.Join(hier, p, "erg")
	if root && ctl == "cpu" {
		// Flat: the sandboxes' cpu groups beside the node's own
		// (cgroup_node.go).
		return filepath.Join(hier, p), nil
	}
	if root {
		if err := c.mkdirParent(dir); err != nil {
			return "", err
		}
	} else if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return "", fmt.Errorf("%s is missing or not writable by uid %d (root must create it and chown it, with its cgroup.procs and tasks, to this user): %w", dir, os.Getuid(), err)
	}
	return dir, nil
}

// enableOptionalV2 turns on the cpu and io controllers for the children of
// dir where dir's parent offers them; memory and pids are on already.
func (c *cgroups) enableOptionalV2(dir string) (notes []string) {
	have := readFields(filepath.Join(dir, "cgroup.controllers"))
	for _, ctl := range []string{"cpu", "io"} {
		if !have[ctl] {
			notes = append(notes, fmt.Sprintf("%s does not offer the %s controller", dir, ctl))
			continue
		}
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+ctl); err != nil {
			notes = append(notes, err.Error())
			continue
		}
		if ctl == "cpu" {
			c.v2cpu = true
		} else {
			c.v2io = true
		}
	}
	return notes
}

// cpuIOFiles are the limit files for l's CPU and I/O settings in g.
func (c *cgroups) cpuIOFiles(g *cgroup, l Limits) [][2]string {
	var files [][2]string
	if g.cpu >= 0 {
		d := g.dirs[g.cpu]
		quota := "max"
		if l.CPUPercent > 0 {
			quota = strconv.Itoa(l.CPUPercent * cfsPeriod / 100)
		}
		if c.version == "v2" {
			files = append(files, [2]string{d + "/cpu.weight", strconv.Itoa(l.CPUWeight)},
				[2]string{d + "/cpu.max", quota + " " + strconv.Itoa(cfsPeriod)})
		} else {
			if quota == "max" {
				quota = "-1"
			}
			files = append(files, [2]string{d + "/cpu.shares", strconv.Itoa(v1Shares(l.CPUWeight))},
				[2]string{d + "/cpu.cfs_period_us", strconv.Itoa(cfsPeriod)},
				[2]string{d + "/cpu.cfs_quota_us", quota})
		}
	}
	if g.io >= 0 {
		d := g.dirs[g.io]
		var cands [][2]string
		if c.version == "v2" {
			cands = [][2]string{{d + "/io.weight", "default " + strconv.Itoa(l.IOWeight)}, {d + "/io.bfq.weight", strconv.Itoa(clamp(l.IOWeight, 1, 1000))}}
		} else {
			cands = [][2]string{{d + "/blkio.weight", strconv.Itoa(clamp(l.IOWeight/10, 10, 1000))}, {d + "/blkio.bfq.weight", strconv.Itoa(clamp(l.IOWeight/10, 1, 1000))}}
		}
		for _, f := range cands {
			if _, err := os.Stat(f[0]); err == nil {
				files = append(files, f)
				break
			}
		}
	}
	return files
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }

// CPULimits says how CPU limits are applied: "cpu.weight, cpu.max" and the
// like, or why they are not.
func (r *Runner) CPULimits() string {
	c := r.cg
	switch {
	case c.version == "v2" && c.v2cpu, c.version == "v1" && c.cpu != "":
		return "on (" + c.version + ")"
	case c.version == "none":
		return "off: no cgroups"
	}
	return "off: no cpu controller (" + strings.Join(c.notes, "; ") + ")"
}
