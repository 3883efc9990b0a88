package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// cgroup2Dir finds a cgroup2 mount to test the v2 path on. On a hybrid
// host (the unified mount without controllers) this exercises placement
// with clone3(CLONE_INTO_CGROUP) and teardown with cgroup.kill, not limits.
func cgroup2Dir(t *testing.T) string {
	for _, d := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return d
		}
	}
	t.Skip("no cgroup2 mount")
	return ""
}

func TestCgroupV2(t *testing.T) {
	if os.Geteuid() != 0 || sandboxtest.InRerun() {
		t.Skip("needs root to make a cgroup2 test group")
	}
	parent := filepath.Join(cgroup2Dir(t), "erg-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(parent); err != nil {
			t.Errorf("remove test cgroup: %v", err)
		}
	})
	r := newRunner(t, sandbox.Config{CgroupParent: parent})
	if r.Cgroups() != "v2" {
		t.Fatalf("Cgroups() = %q with a cgroup2 parent", r.Cgroups())
	}
	spec := probeSpec(t, "v2", sandboxtest.BuildProbeTree(t))
	spec.Env = append(spec.Env, "PROBE_IGNORE_TERM=1")
	sb := start(t, r, spec)
	waitReady(t, sb)
	paths := sb.CgroupPaths()
	if len(paths) != 1 || filepath.Dir(paths[0]) != parent {
		t.Fatalf("CgroupPaths() = %v, want one group under %s", paths, parent)
	}
	// The init and the app are both in the group: the init was born there.
	procs, err := os.ReadFile(filepath.Join(paths[0], "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if pids := strings.Fields(string(procs)); len(pids) != 2 || !slices.Contains(pids, strconv.Itoa(sb.Pid())) {
		t.Errorf("cgroup.procs = %q, want the init %d and the app", procs, sb.Pid())
	}
	self, err := os.ReadFile("/proc/" + strconv.Itoa(sb.Pid()) + "/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(self), "0::/") || !strings.Contains(string(self), "/v2\n") {
		t.Errorf("init's /proc/pid/cgroup: %q", self)
	}
	for _, f := range []string{"memory.max", "pids.max"} {
		if b, err := os.ReadFile(filepath.Join(paths[0], f)); err == nil {
			t.Logf("%s = %s", f, b)
		} else {
			t.Logf("%s not available on this cgroup2 mount: limits not exercised", f)
		}
	}
	if got := mustGet(t, sb, "/"); got != "ok" {
		t.Errorf("GET / = %q", got)
	}
	checkUsageV2(t, sb, paths[0], spec.Limits)
	// The app ignores SIGTERM and the deadline has passed: Stop must kill
	// the group (cgroup.kill).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	t0 := time.Now()
	if err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped in %v", time.Since(t0))
	if !errors.Is(sb.Err(), sandbox.ErrStopped) {
		t.Errorf("Err() = %v", sb.Err())
	}
	gone(t, paths)
}

// checkUsageV2: Usage reads a v2 group (TestCgroupV2 runs in make
// test-cgroup2's VM too): CPU time from cpu.stat, which every v2 group
// has, grows while the app works; memory and the limits where the
// parent offers the memory controller.
func checkUsageV2(t *testing.T, sb *sandbox.Sandbox, dir string, l sandbox.Limits) {
	t.Helper()
	before, err := sb.Usage()
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	mustGet(t, sb, "/memhog?mb=16&keep=1")
	mustGet(t, sb, "/spin?ms=500&threads=2")
	after, err := sb.Usage()
	if err != nil {
		t.Fatalf("Usage: %v", err)
	}
	t.Logf("usage before %+v, after %+v", before, after)
	if after.CPU-before.CPU < 20*time.Millisecond {
		t.Errorf("after 500 ms of spinning on two threads, CPU time %v -> %v", before.CPU, after.CPU)
	}
	if _, err := os.Stat(filepath.Join(dir, "memory.max")); err == nil {
		if after.MemoryBytes < 16<<20 || after.MemoryLimitBytes != l.MemoryBytes {
			t.Errorf("holding 16 MiB under a %d-byte limit: memory %d, limit %d", l.MemoryBytes, after.MemoryBytes, after.MemoryLimitBytes)
		}
	}
}
