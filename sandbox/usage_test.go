package sandbox_test

import (
	"testing"
	"time"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// TestUsage: a sandbox's usage comes from its cgroup: memory an app holds
// is charged (and seen at the peak), CPU time grows while it works, the
// limits are the spec's, and an ended sandbox has no usage to read.
func TestUsage(t *testing.T) {
	r := newRunner(t, sandbox.Config{Zygotes: -1})
	if r.Cgroups() == "none" {
		t.Skip("no cgroups")
	}
	spec := probeSpec(t, "usage", sandboxtest.BuildProbeTree(t))
	sb := start(t, r, spec)
	waitReady(t, sb)
	before, err := sb.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if before.MemoryLimitBytes != spec.Limits.MemoryBytes || before.PidsLimit != spec.Limits.Pids {
		t.Errorf("limits: memory %d pids %d, want %d and %d", before.MemoryLimitBytes, before.PidsLimit, spec.Limits.MemoryBytes, spec.Limits.Pids)
	}
	if before.Pids < 2 {
		t.Errorf("%d processes counted, want the init and the app at least", before.Pids)
	}
	const mb = 40
	mustGet(t, sb, "/memhog?mb=40&keep=1")
	mustGet(t, sb, "/spin?ms=500&threads=2")
	after, err := sb.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if after.MemoryBytes < mb<<20 || after.MemoryPeakBytes != 0 && after.MemoryPeakBytes < after.MemoryBytes {
		t.Errorf("after holding %d MiB: memory %d, peak %d", mb, after.MemoryBytes, after.MemoryPeakBytes)
	}
	if after.CPU-before.CPU < 20*time.Millisecond {
		t.Errorf("after 500 ms of spinning on two threads, CPU time %v -> %v", before.CPU, after.CPU)
	}
	if after.OOMKills != 0 {
		t.Errorf("%d OOM kills", after.OOMKills)
	}
	t.Logf("before %+v\nafter %+v", before, after)
	stop(t, sb)
	if _, err := sb.Usage(); err == nil {
		t.Error("usage of an ended sandbox")
	}
}
