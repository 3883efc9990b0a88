package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Usage is what a running sandbox uses and the limits it runs under, read
// from its cgroup. A field the kernel does not give (no memory.peak before
// Linux 5.19, no cgroup at all) is 0.
//
//	            cgroup v2                        cgroup v1
//	CPU         cpu.stat usage_usec              utime+stime (and the reaped
//	                                             children's) of every process
//	                                             in the group, from /proc
//	memory      memory.current, memory.peak,     memory.usage_in_bytes,
//	            memory.max                       max_usage_in_bytes, limit_in_bytes
//	pids        pids.current, pids.max,          the same files
//	            pids.events "max"
//	OOM kills   memory.events "oom_kill"         memory.oom_control "oom_kill"
//
// On v1 the sandbox has no cpuacct group of its own (the cpu hierarchy
// weighs and caps, it does not count), so CPU time is summed over the
// group's processes: each one's own time and that of the children it
// waited for, which the init, pid 1 of the sandbox, does for every orphan.
type Usage struct {
	CPU              time.Duration
	MemoryBytes      int64
	MemoryPeakBytes  int64
	MemoryLimitBytes int64 // 0: no limit
	Pids, PidsLimit  int   // PidsLimit 0: no limit
	// PidsLimitHits counts forks refused at the pids limit; OOMKills the
	// processes the kernel killed at the memory limit.
	PidsLimitHits, OOMKills int
}

// Usage reads what the sandbox uses now. It fails once the sandbox has
// ended (its cgroup is gone) or when it runs without cgroups.
func (s *Sandbox) Usage() (Usage, error) {
	s.mu.Lock()
	cg, reaped := s.cg, s.reaped
	s.mu.Unlock()
	if reaped {
		return Usage{}, errors.New("sandbox has ended")
	}
	return cg.usage()
}

func (g *cgroup) usage() (Usage, error) {
	var u Usage
	switch g.version {
	case "v2":
		d := g.dirs[0]
		stat := keyed(filepath.Join(d, "cpu.stat"))
		usec, ok := stat["usage_usec"]
		if !ok {
			return u, fmt.Errorf("no usage_usec in %s/cpu.stat", d)
		}
		u.CPU = time.Duration(usec) * time.Microsecond
		u.MemoryBytes = readInt(filepath.Join(d, "memory.current"))
		u.MemoryPeakBytes = readInt(filepath.Join(d, "memory.peak"))
		u.MemoryLimitBytes = readInt(filepath.Join(d, "memory.max"))
		u.Pids = int(readInt(filepath.Join(d, "pids.current")))
		u.PidsLimit = int(readInt(filepath.Join(d, "pids.max")))
		u.PidsLimitHits = int(keyed(filepath.Join(d, "pids.events"))["max"])
	case "v1":
		mem, pids := g.dirs[0], g.dirs[1]
		cpu, err := procsCPU(filepath.Join(mem, "cgroup.procs"))
		if err != nil {
			return u, err
		}
		u.CPU = cpu
		u.MemoryBytes = readInt(filepath.Join(mem, "memory.usage_in_bytes"))
		u.MemoryPeakBytes = readInt(filepath.Join(mem, "memory.max_usage_in_bytes"))
		u.MemoryLimitBytes = readInt(filepath.Join(mem, "memory.limit_in_bytes"))
		if u.MemoryLimitBytes >= 1<<62 { // v1's "no limit" is a huge number
			u.MemoryLimitBytes = 0
		}
		u.Pids = int(readInt(filepath.Join(pids, "pids.current")))
		u.PidsLimit = int(readInt(filepath.Join(pids, "pids.max")))
		u.PidsLimitHits = int(keyed(filepath.Join(pids, "pids.events"))["max"])
	default:
		return u, errors.New("sandbox has no cgroup")
	}
	u.OOMKills = g.oomKills()
	return u, nil
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procsCPU sums the CPU time of the processes listed in a cgroup.procs
// file, each with its waited-for children's.
func procsCPU(procs string) (time.Duration, error) {
	b, err := os.ReadFile(procs)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, pid := range strings.Fields(string(b)) {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue // it exited since; its parent counts it now
		}
		// The command name, in parentheses, may hold spaces: fields are
		// counted from the last ')'. utime stime cutime cstime are fields
		// 14 to 17, so 12 to 15 after the name.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 16 {
			continue
		}
		for _, v := range f[11:15] {
			n, _ := strconv.ParseInt(v, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * clockTick, nil
}

// readInt reads a file holding one number; "max" or a missing file is 0.
func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	return n
}

// keyed reads a flat keyed file ("key value" lines, as cpu.stat).
func keyed(path string) map[string]int64 {
	b, _ := os.ReadFile(path)
	m := map[string]int64{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			m[k] = n
		}
	}
	return m
}
