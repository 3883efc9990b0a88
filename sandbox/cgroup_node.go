package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Where the CPU groups sit: each sandbox's cpu group is made directly in
// the node's own cgroup, and the node's process moves into a group of its
// own beside them, weighted above every sandbox:
//
//	<node's cgroup>/erg.node   the node (cpu.weight 300, v1 cpu.shares 3072)
//	<node's cgroup>/g-...      a sandbox (cpu.weight 100 by default)
//
// So a sandbox that spins is charged alone, and a sandbox that wakes to
// serve a request comes back with a claim of its own, not with what a
// shared group of all sandboxes had left after the spinner; and many busy
// sandboxes do not crowd the node's proxy, which every request passes.
// (Measured in BENCHMARKS.md, "CPU isolation": a nested layout, all
// sandboxes in one group beside the node, let a spinning sandbox push
// another's p99 through the proxy 10-26 times its idle value.)
//
// v1 does this in the cpu hierarchy as root; memory, pids and blkio keep
// one parent group for all sandboxes (<own>/erg), and unprivileged v1 keeps
// the delegated <own>/erg for cpu too, with the node where it is. v2 does
// it in the node's own group (the systemd service's or the delegated
// subtree): the no-internal-processes rule moves the node into a leaf
// anyway. In the v2 root cgroup (no systemd) the sandboxes and the node's
// leaf go in <root>/erg instead of among the machine's top groups.

// nodeGroupName is not a valid sandbox name, so no sandbox's group can
// take it.
const nodeGroupName = "erg.node"

// nodeCPUWeight is the node's cpu.weight: three times a sandbox's
// default (100). Enough that a spinning grain leaves the proxy its turn
// (BenchmarkCPUIsolationProxy within 2x of idle either way), and not so
// much that the node, waking for every request, keeps preempting the
// grain it forwards to: at ten times, a grain's answers waited twice as
// long at the tail (BENCHMARKS.md, "The node's weight: three times a
// grain's").
const nodeCPUWeight = 300

// nodeGroup counts the runners of this process that placed it in a v1
// node group, so that the last to close moves it back.
var nodeGroup struct {
	sync.Mutex
	users int
	dir   string // v1: the node group, "" if none
	back  string // v1: the cgroup.procs the process came from
}

// ownPath is p with a trailing node group taken off: a second runner in a
// process the first moved into its node group sees its own cgroup as the
// one the first started in.
func ownPath(p string) string {
	if filepath.Base(p) == nodeGroupName {
		return filepath.Dir(p)
	}
	return p
}

// joinNodeGroupV1 moves this process into the v1 cpu group parent/erg.node
// with nodeCPUWeight, unless a runner of this process did already.
func (c *cgroups) joinNodeGroupV1(parent string) error {
	nodeGroup.Lock()
	defer nodeGroup.Unlock()
	dir := filepath.Join(parent, nodeGroupName)
	if nodeGroup.users > 0 && nodeGroup.dir == dir {
		nodeGroup.users++
		c.nodeGroup = true
		return nil
	}
	if nodeGroup.users > 0 {
		return fmt.Errorf("this process is in the node group %s already, not %s", nodeGroup.dir, dir)
	}
	// Another node's process leaving may remove the group between its
	// making and this process's moving in (while no process is in it):
	// then it is made again. Once this process is in it, it stays.
	for attempt := 0; ; attempt++ {
		err := joinV1(dir)
		if err == nil {
			break
		}
		if attempt == 2 || !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	nodeGroup.users, nodeGroup.dir, nodeGroup.back = 1, dir, filepath.Join(parent, "cgroup.procs")
	c.nodeGroup = true
	return nil
}

// leaveNodeGroup undoes joinNodeGroupV1 when the last runner that joined
// closes: the process goes back and the group is removed if empty.
func (c *cgroups) leaveNodeGroup() error {
	if !c.nodeGroup {
		return nil
	}
	c.nodeGroup = false
	nodeGroup.Lock()
	defer nodeGroup.Unlock()
	if nodeGroup.users--; nodeGroup.users > 0 {
		return nil
	}
	if err := writeFile(nodeGroup.back, strconv.Itoa(os.Getpid())); err != nil {
		return err
	}
	// Another node on the host (every node's process shares it, as
	// their sandboxes share the parent) or children this one started
	// while in it keep it busy: it is then left to the last, or to the
	// next node, which reuses it.
	// A node leaving at once may have removed it first.
	if err := os.Remove(nodeGroup.dir); err != nil && !errors.Is(err, unix.EBUSY) && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// joinV1 makes the v1 cpu group dir if missing, weights it, and moves
// this process into it.
func joinV1(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	if err := writeFile(filepath.Join(dir, "cpu.shares"), strconv.Itoa(v1Shares(nodeCPUWeight))); err != nil {
		return err
	}
	// Writing a pid to a v1 cgroup.procs moves every thread of it.
	return writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(os.Getpid()))
}

// v2NodeLeaf moves this process into parent/erg.node (made if missing)
// and, where the cpu controller is on for parent's children, gives it
// nodeCPUWeight. It stays there when the runner closes: v2 forbids it
// going back to a group whose children have controllers.
func (c *cgroups) v2NodeLeaf(parent string) error {
	leaf := filepath.Join(parent, nodeGroupName)
	if err := c.mkdirParent(leaf); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(os.Getpid())); err != nil {
		return fmt.Errorf("move the node into %s: %w", leaf, err)
	}
	if c.v2cpu {
		return writeFile(filepath.Join(leaf, "cpu.weight"), strconv.Itoa(nodeCPUWeight))
	}
	return nil
}

// v1Shares is cpu.shares for a cpu.weight: 100 is the kernel's 1024.
func v1Shares(weight int) int { return max(2, weight*1024/100) }

// NodeCgroup is the cpu cgroup dir the node's process was placed in, ""
// if it was not moved (no cpu controller, a CgroupParent, or v1
// unprivileged).
func (r *Runner) NodeCgroup() string {
	c := r.cg
	switch {
	case c.version == "v1" && c.nodeGroup:
		return filepath.Join(c.cpu, nodeGroupName)
	case c.version == "v2" && !c.partial && strings.HasPrefix(r.CPULimits(), "on"):
		return filepath.Join(c.v2, nodeGroupName)
	}
	return ""
}
