package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const cgroupV1Magic = 0x27e0eb // CGROUP_SUPER_MAGIC

// cgroups is where a runner creates per-sandbox cgroups, and how.
type cgroups struct {
	version string // "v2", "v1" or "none"
	v2      string // v2: parent dir of per-sandbox groups
	// partial (v2 with Config.CgroupParent) writes only the limit files
	// the parent offers, so a cgroup2 mount without controllers still
	// exercises placement and teardown.
	partial bool
	memory  string // v1: parent dirs in the memory and pids hierarchies
	pids    string
	memsw   bool     // v1: memory.memsw.* exists (swap accounting)
	created []string // parent dirs this runner made, removed by Close if empty
	// The optional controllers (cgroup_cpu.go): v1 parent dirs, "" if
	// none; v2, whether enabled. notes say why one is missing.
	cpu, blkio  string
	v2cpu, v2io bool
	notes       []string
	nodeGroup   bool // v1: this runner placed the node in its cpu group (cgroup_node.go)
}

// detectCgroups finds a usable cgroup setup: v2 first, then v1. It returns
// version "none" and the reason when neither can be used.
func detectCgroups(parent string, root bool) (*cgroups, error) {
	if parent != "" {
		return v2Override(parent)
	}
	var reasons []string
	c, err := detectV2(root)
	if err == nil {
		return c, nil
	}
	reasons = append(reasons, "cgroup v2: "+err.Error())
	c, err = detectV1(root)
	if err == nil {
		return c, nil
	}
	reasons = append(reasons, "cgroup v1: "+err.Error())
	return &cgroups{version: "none"}, errors.New(strings.Join(reasons, "; "))
}

func v2Override(parent string) (*cgroups, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(parent, &st); err != nil {
		return nil, fmt.Errorf("cgroup parent %s: %w", parent, err)
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("cgroup parent %s is not in a cgroup v2 hierarchy", parent)
	}
	c := &cgroups{version: "v2", v2: parent, partial: true}
	have := readFields(filepath.Join(parent, "cgroup.controllers"))
	var enable []string
	for _, ctl := range []string{"memory", "pids", "cpu", "io"} {
		if have[ctl] {
			enable = append(enable, "+"+ctl)
		}
	}
	if len(enable) > 0 {
		if err := writeFile(filepath.Join(parent, "cgroup.subtree_control"), strings.Join(enable, " ")); err != nil {
			return nil, err
		}
	}
	c.v2cpu, c.v2io = have["cpu"], have["io"]
	return c, nil
}

// ownCgroups parses /proc/self/cgroup: controller (or "" for v2) -> path,
// the node group (cgroup_node.go) taken off.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) != 3 {
			continue
		}
		p := ownPath(parts[2])
		if parts[1] == "" {
			own[""] = p
			continue
		}
		for _, ctl := range strings.Split(parts[1], ",") {
			own[ctl] = p
		}
	}
	return own, nil
}

// cgroup2Mount finds the unified hierarchy: /sys/fs/cgroup itself on a
// pure v2 system, or a cgroup2 mount elsewhere on a hybrid one (the
// shallowest, if there are several).
func cgroup2Mount() (string, error) {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "/sys/fs/cgroup", nil
	}
	ms, err := readMounts("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, m := range slices.Backward(ms) { // deepest first
		if m.fstype == "cgroup2" {
			return m.point, nil
		}
	}
	return "", errors.New("no cgroup2 mount")
}

func detectV2(root bool) (*cgroups, error) {
	mnt, err := cgroup2Mount()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	p, ok := own[""]
	if !ok {
		return nil, errors.New("no v2 entry in /proc/self/cgroup")
	}
	base := filepath.Join(mnt, p)
	have := readFields(filepath.Join(base, "cgroup.controllers"))
	if !have["memory"] || !have["pids"] {
		return nil, fmt.Errorf("%s does not offer the memory and pids controllers", base)
	}
	if unix.Access(filepath.Join(base, "cgroup.subtree_control"), unix.W_OK) != nil {
		return nil, fmt.Errorf("%s is not delegated to uid %d (run the node with systemd Delegate=yes)", base, os.Getuid())
	}
	c := &cgroups{version: "v2"}
	sub := filepath.Join(base, "cgroup.subtree_control")
	if !hasControllers(sub) {
		// No internal processes: a cgroup with controllers enabled for
		// its children may hold no processes itself, so move ours into
		// a leaf first.
		if err := writeFile(sub, "+memory +pids"); err != nil {
			if !errors.Is(err, unix.EBUSY) {
				return nil, err
			}
			leaf := filepath.Join(base, nodeGroupName)
			if err := c.mkdirParent(leaf); err != nil {
				return nil, err
			}
			pids, err := os.ReadFile(filepath.Join(base, "cgroup.procs"))
			if err != nil {
				return nil, err
			}
			for _, pid := range strings.Fields(string(pids)) {
				if err := writeFile(filepath.Join(leaf, "cgroup.procs"), pid); err != nil && !errors.Is(err, unix.ESRCH) {
					return nil, fmt.Errorf("move process %s into leaf cgroup: %w", pid, err)
				}
			}
			if err := writeFile(sub, "+memory +pids"); err != nil {
				return nil, err
			}
		}
	}
	c.notes = c.enableOptionalV2(base)
	c.v2 = base
	if p == "/" {
		// The root cgroup: the sandboxes and the node's leaf go in a
		// group of their own, not among the machine's top groups.
		c.v2 = filepath.Join(base, "erg")
		if err := c.mkdirParent(c.v2); err != nil {
			return nil, err
		}
		if err := writeFile(filepath.Join(c.v2, "cgroup.subtree_control"), "+memory +pids"); err != nil {
			return nil, err
		}
		c.v2cpu, c.v2io = false, false
		c.notes = c.enableOptionalV2(c.v2)
	}
	if err := c.v2NodeLeaf(c.v2); err != nil {
		return nil, err
	}
	return c, nil
}

func hasControllers(subtreeControl string) bool {
	f := readFields(subtreeControl)
	return f["memory"] && f["pids"]
}

func detectV1(root bool) (*cgroups, error) {
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	c := &cgroups{version: "v1"}
	for _, ctl := range []string{"memory", "pids"} {
		hier := filepath.Join("/sys/fs/cgroup", ctl)
		var st unix.Statfs_t
		if err := unix.Statfs(hier, &st); err != nil || st.Type != cgroupV1Magic {
			return nil, fmt.Errorf("no %s hierarchy at %s", ctl, hier)
		}
		p, ok := own[ctl]
		if !ok {
			return nil, fmt.Errorf("no %s entry in /proc/self/cgroup", ctl)
		}
		dir := filepath.Join(hier, p, "erg")
		if root {
			if err := c.mkdirParent(dir); err != nil {
				return nil, err
			}
		} else if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
			return nil, fmt.Errorf("%s is missing or not writable by uid %d (root must create it and chown it, with its cgroup.procs and tasks, to this user): %w", dir, os.Getuid(), err)
		}
		if ctl == "memory" {
			c.memory = dir
		} else {
			c.pids = dir
		}
	}
	_, err = os.Stat(filepath.Join(c.memory, "memory.memsw.limit_in_bytes"))
	c.memsw = err == nil
	c.notes = c.optionalV1(own, root)
	if c.cpu != "" && root {
		if err := c.joinNodeGroupV1(c.cpu); err != nil {
			c.notes = append(c.notes, "the node stays outside a cpu group of its own: "+err.Error())
		}
	}
	return c, nil
}

// mkdirParent creates dir if needed and remembers it for close.
func (c *cgroups) mkdirParent(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if err == nil {
		c.created = append(c.created, dir)
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	return err
}

// close removes the parent dirs this runner created, if they are empty.
func (c *cgroups) close() error {
	errs := []error{c.leaveNodeGroup()}
	for i := len(c.created) - 1; i >= 0; i-- {
		if err := os.Remove(c.created[i]); err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, err)
		}
	}
	c.created = nil
	return errors.Join(errs...)
}

// removeStale removes empty per-sandbox groups matching pattern that
// stale says are left over, best effort.
func (c *cgroups) removeStale(pattern string, stale func(name string) bool) {
	for _, parent := range []string{c.v2, c.memory, c.pids, c.cpu, c.blkio} {
		if parent == "" {
			continue
		}
		dirs, _ := filepath.Glob(filepath.Join(parent, pattern))
		for _, d := range dirs {
			if stale(filepath.Base(d)) {
				os.Remove(d)
			}
		}
	}
}

// staleZygote reports whether a zygote group (zygote-<pid>-<random>) was
// made by a process that is gone. Two nodes on one host share the cgroup
// parent: a live one's group is empty for a moment between its mkdir and
// the zygote moving in, and must survive the other's start. A name without
// a pid is an older node's, and stale.
func staleZygote(name string) bool {
	rest, ok := strings.CutPrefix(name, "zygote-")
	if !ok {
		return false
	}
	pidText, _, ok := strings.Cut(rest, "-")
	if !ok {
		return true
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 {
		return true
	}
	return unix.Kill(pid, 0) == unix.ESRCH
}

// cgroup is the set of cgroup dirs of one sandbox.
type cgroup struct {
	version string
	dirs    []string // v2: one; v1: memory, pids, then cpu and blkio if used
	cpu, io int      // index in dirs of the cpu and io (blkio) groups, -1 if none
}

// create makes the group's dirs and, if l is not nil, writes its limits.
func (c *cgroups) create(name string, l *Limits) (g *cgroup, err error) {
	g = &cgroup{version: c.version, cpu: -1, io: -1}
	switch c.version {
	case "none":
		return g, nil
	case "v2":
		g.dirs = []string{filepath.Join(c.v2, name)}
		if c.v2cpu {
			g.cpu = 0
		}
		if c.v2io {
			g.io = 0
		}
	case "v1":
		g.dirs = []string{filepath.Join(c.memory, name), filepath.Join(c.pids, name)}
		if c.cpu != "" {
			g.cpu = len(g.dirs)
			g.dirs = append(g.dirs, filepath.Join(c.cpu, name))
		}
		if c.blkio != "" {
			g.io = len(g.dirs)
			g.dirs = append(g.dirs, filepath.Join(c.blkio, name))
		}
	}
	defer func() {
		if err != nil {
			g.remove()
		}
	}()
	for i, d := range g.dirs {
		if err := os.Mkdir(d, 0o755); err != nil {
			// A group left by a crashed node: reuse the name if empty.
			if !errors.Is(err, fs.ErrExist) || os.Remove(d) != nil || os.Mkdir(d, 0o755) != nil {
				g.dirs = g.dirs[:i]
				return g, fmt.Errorf("create cgroup: %w", err)
			}
		}
	}
	if l != nil {
		return g, c.setLimits(g, *l)
	}
	return g, nil
}

// setLimits writes l into g's limit files. g must not have had memory
// limits written before (memsw must never be below the memory limit).
func (c *cgroups) setLimits(g *cgroup, l Limits) error {
	mem := strconv.FormatInt(l.MemoryBytes, 10)
	pids := strconv.Itoa(l.Pids)
	var files [][2]string
	switch c.version {
	case "none":
		return nil
	case "v2":
		d := g.dirs[0]
		files = [][2]string{{d + "/memory.max", mem}, {d + "/memory.swap.max", "0"}, {d + "/pids.max", pids}}
	case "v1":
		files = [][2]string{{g.dirs[0] + "/memory.limit_in_bytes", mem}}
		if c.memsw {
			// Must not be below memory.limit_in_bytes, so it comes second.
			files = append(files, [2]string{g.dirs[0] + "/memory.memsw.limit_in_bytes", mem})
		}
		files = append(files, [2]string{g.dirs[1] + "/pids.max", pids})
	}
	files = append(files, c.cpuIOFiles(g, l)...)
	for _, f := range files {
		if c.partial {
			if _, err := os.Stat(f[0]); err != nil {
				continue
			}
		}
		if err := writeFile(f[0], f[1]); err != nil {
			return fmt.Errorf("set cgroup limit: %w", err)
		}
	}
	return nil
}

// canRename says whether a zygote's groups can become a sandbox's: v1
// renames them, v2 (which cannot rename a cgroup) moves the zygote into
// new ones.
func (c *cgroups) canRename() bool { return true }

// rename gives g's dirs the name name. The returned group names the dirs
// as they are, also when it fails half-way. pid is the one process in the
// group (a zygote's init, before it has forked anything): v2 cannot
// rename a cgroup, so a group of that name is made beside it, the process
// moved into it, and the old one removed. (Memory the init touched stays
// charged to the old group until freed; it is a few pages.)
func (g *cgroup) rename(name string, pid int) (*cgroup, error) {
	ng := &cgroup{version: g.version, dirs: append([]string(nil), g.dirs...), cpu: g.cpu, io: g.io}
	for i, d := range g.dirs {
		to := filepath.Join(filepath.Dir(d), name)
		var err error
		if g.version == "v2" {
			err = moveV2(d, to, pid)
		} else {
			err = os.Rename(d, to)
			if err != nil && (errors.Is(err, fs.ErrExist) || errors.Is(err, unix.ENOTEMPTY)) && os.Remove(to) == nil {
				// A group left by a crashed node: reuse the name if empty.
				err = os.Rename(d, to)
			}
		}
		if err != nil {
			return ng, fmt.Errorf("rename cgroup: %w", err)
		}
		ng.dirs[i] = to
	}
	return ng, nil
}

// moveV2 moves process pid from group from into a new group to (an empty
// leftover of that name is reused) and removes from.
func moveV2(from, to string, pid int) error {
	if err := os.Mkdir(to, 0o755); err != nil {
		if !errors.Is(err, fs.ErrExist) || os.Remove(to) != nil || os.Mkdir(to, 0o755) != nil {
			return err
		}
	}
	// Writing the pid moves the whole process, every thread of it.
	if err := writeFile(filepath.Join(to, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
		os.Remove(to)
		return err
	}
	if err := os.Remove(from); err != nil {
		return fmt.Errorf("remove the zygote's group: %w", err)
	}
	return nil
}

// openDir returns an O_PATH fd for clone3(CLONE_INTO_CGROUP) (v2 only).
func (g *cgroup) openDir() (int, error) {
	return unix.Open(g.dirs[0], unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
}

// addPid places a process in the v1 groups.
func (g *cgroup) addPid(pid int) error {
	for _, d := range g.dirs {
		if err := writeFile(filepath.Join(d, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
			return fmt.Errorf("place sandbox in cgroup: %w", err)
		}
	}
	return nil
}

// kill kills every process in the group. It reports false when it could
// not (no cgroup, or v2 without cgroup.kill).
func (g *cgroup) kill() bool {
	switch g.version {
	case "v2":
		return writeFile(filepath.Join(g.dirs[0], "cgroup.kill"), "1") == nil
	case "v1":
		for _, d := range g.dirs {
			b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					unix.Kill(pid, unix.SIGKILL)
				}
			}
		}
		return true
	}
	return false
}

// remove deletes the group's dirs. Processes that are still exiting keep
// a group busy for a moment, so it kills and retries for a while.
func (g *cgroup) remove() error {
	deadline := time.Now().Add(3 * time.Second)
	for i := len(g.dirs) - 1; i >= 0; i-- {
		for {
			err := os.Remove(g.dirs[i])
			if err == nil || errors.Is(err, fs.ErrNotExist) {
				break
			}
			if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("remove cgroup: %w", err)
			}
			g.kill()
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// oomKills is the number of processes the kernel killed for hitting the
// group's memory limit.
func (g *cgroup) oomKills() int {
	var file string
	switch g.version {
	case "v2":
		file = filepath.Join(g.dirs[0], "memory.events")
	case "v1":
		file = filepath.Join(g.dirs[0], "memory.oom_control")
	default:
		return 0
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "oom_kill "); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

func (g *cgroup) memoryUsage() (int64, error) {
	var file string
	switch g.version {
	case "v2":
		file = filepath.Join(g.dirs[0], "memory.current")
	case "v1":
		file = filepath.Join(g.dirs[0], "memory.usage_in_bytes")
	default:
		return 0, errors.New("sandbox has no cgroup")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
}

func readFields(path string) map[string]bool {
	b, _ := os.ReadFile(path)
	m := map[string]bool{}
	for _, f := range strings.Fields(string(b)) {
		m[f] = true
	}
	return m
}

func writeFile(path, s string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(s)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %q to %s: %w", s, path, err)
	}
	return nil
}
