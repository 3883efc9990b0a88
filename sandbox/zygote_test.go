package sandbox_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// TestZygoteIsClaimedOnceAndRefilled checks the pool of pre-started
// sandboxes: a start takes the waiting zygote (same init process), renames
// its cgroups to the sandbox's name, the pool refills with a new process,
// and closing the runner kills the idle zygote and removes its cgroups.
func TestZygoteIsClaimedOnceAndRefilled(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := sandbox.WaitPool(ctx, r); err != nil {
		t.Fatal(err)
	}
	zygotes := sandbox.ZygotePids(r)
	if len(zygotes) != 1 {
		t.Fatalf("%d zygotes waiting, want 1", len(zygotes))
	}
	root := sandboxtest.BuildProbeTree(t)
	sb := start(t, r, probeSpec(t, "zygote-claim", root))
	waitReady(t, sb)
	if sb.Pid() != zygotes[0] {
		t.Errorf("the sandbox's init is pid %d, the zygote was %d", sb.Pid(), zygotes[0])
	}
	for _, p := range sb.CgroupPaths() {
		if !strings.HasSuffix(p, "/zygote-claim") {
			t.Errorf("cgroup %s is not named after the sandbox", p)
		}
		// v2 moves the init into the new group: it and the app are there.
		procs, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(sb.Pid())) {
			t.Errorf("the sandbox's init %d is not in its cgroup %s (%q)", sb.Pid(), p, procs)
		}
	}

	var next []int
	deadline := time.Now().Add(10 * time.Second)
	for {
		sandbox.WaitPool(ctx, r)
		if next = sandbox.ZygotePids(r); len(next) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool did not refill")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if next[0] == zygotes[0] {
		t.Fatal("the claimed zygote went back into the pool")
	}
	cgroups := sandbox.ZygoteCgroups(r)

	stopCtx, cancelStop := context.WithTimeout(ctx, 5*time.Second)
	defer cancelStop()
	sb.Stop(stopCtx)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(next[0], 0); err != syscall.ESRCH {
		t.Errorf("the idle zygote %d still exists after Close: %v", next[0], err)
	}
	for _, d := range cgroups {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("zygote cgroup %s left after Close", d)
		}
	}
}

// TestStartWithoutZygotes runs the cold path: no pool, a sandbox still
// starts, answers and stops.
func TestStartWithoutZygotes(t *testing.T) {
	r := newRunner(t, sandbox.Config{Zygotes: -1})
	if pids := sandbox.ZygotePids(r); len(pids) != 0 {
		t.Fatalf("zygotes %v with the pool off", pids)
	}
	root := sandboxtest.BuildProbeTree(t)
	sb := start(t, r, probeSpec(t, "no-zygote", root))
	waitReady(t, sb)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if status, _, err := get(ctx, sb, "/id"); err != nil || status != 200 {
		t.Fatalf("GET /id = %d, %v", status, err)
	}
	if err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
