package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// runBattery runs the escape battery against a sandbox started directly,
// with a second sandbox as the "other grain"; mods change the attacked
// sandbox's spec.
func runBattery(t *testing.T, r *sandbox.Runner, mods ...func(*sandbox.Spec)) {
	root := sandboxtest.BuildProbeTree(t)
	otherSpec := probeSpec(t, "battery-other", root)
	otherFile := filepath.Join(otherSpec.Var, "secret")
	otherContent := "other grain's data"
	if err := os.WriteFile(otherFile, []byte(otherContent), 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, r, otherSpec)

	spec := probeSpec(t, "battery", root)
	for _, mod := range mods {
		mod(&spec)
	}
	var mu sync.Mutex
	cur := start(t, r, spec)
	waitReady(t, cur)
	current := func() *sandbox.Sandbox {
		mu.Lock()
		defer mu.Unlock()
		return cur
	}
	tgt := sandboxtest.Target{
		Get: func(ctx context.Context, path string) (int, []byte, error) {
			return get(ctx, current(), path)
		},
		OtherVarFile:    otherFile,
		OtherVarContent: otherContent,
		NoFile:          testLimits.NoFile,
		Restart: func(ctx context.Context) error {
			old := current()
			select {
			case <-old.Done():
			case <-ctx.Done():
				return fmt.Errorf("the sandbox did not end after the memory hog: %w", ctx.Err())
			}
			if err := old.Err(); err == nil || !strings.Contains(err.Error(), "out of memory") {
				return fmt.Errorf("the sandbox ended with %v, want an out-of-memory kill", err)
			}
			sb := start(t, r, spec)
			waitReady(t, sb)
			mu.Lock()
			cur = sb
			mu.Unlock()
			return nil
		},
	}
	if r.Cgroups() != "none" {
		tgt.Pids = testLimits.Pids
		tgt.MemoryBytes = testLimits.MemoryBytes
	}
	sandboxtest.Battery(t, tgt)
}

func TestBattery(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	t.Logf("mode %s, cgroups %s", r.Mode(), r.Cgroups())
	runBattery(t, r)
}

// TestBatteryColdStart runs the battery with no zygote pool, so the path
// every cgroup v2 host takes is attacked too.
func TestBatteryColdStart(t *testing.T) {
	runBattery(t, newRunner(t, sandbox.Config{Zygotes: -1}))
}

// TestUnprivileged runs as root: it sets up the user ergtest with
// delegated cgroups and re-runs itself as that user, where the runner is
// unprivileged.
func TestUnprivileged(t *testing.T) {
	if !sandboxtest.InRerun() {
		uid, gid := sandboxtest.UnprivilegedUser(t)
		sandboxtest.RerunAs(t, uid, gid)
		return
	}
	r := newRunner(t, sandbox.Config{})
	if r.Mode() != "unprivileged" {
		t.Fatalf("mode %s as uid %d", r.Mode(), os.Getuid())
	}
	if r.Cgroups() == "none" {
		t.Errorf("cgroups %q, want the delegated v1 groups or v2 subtree", r.Cgroups())
	}
	t.Logf("unprivileged: cgroups %s, CPU limits %s", r.Cgroups(), r.CPULimits())
	t.Run("start-dial-stop", func(t *testing.T) {
		sb := start(t, r, probeSpec(t, "unpriv", sandboxtest.BuildProbeTree(t)))
		waitReady(t, sb)
		if got := mustGet(t, sb, "/"); got != "ok" {
			t.Errorf("GET / = %q", got)
		}
		paths := sb.CgroupPaths()
		stop(t, sb)
		gone(t, paths)
	})
	t.Run("battery", func(t *testing.T) { runBattery(t, r) })
	t.Run("battery-without-zygotes", func(t *testing.T) {
		runBattery(t, newRunner(t, sandbox.Config{Zygotes: -1}))
	})
	t.Run("cold-start", func(t *testing.T) { testColdStart(t, r, 20) })
	t.Run("cold-start-without-zygotes", func(t *testing.T) {
		testColdStart(t, newRunner(t, sandbox.Config{Zygotes: -1}), 10)
	})
}
