package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg/sandbox/sandboxtest"
)

// TestGrainLifecycleUnprivileged: with the node as an ordinary user (on
// cgroup v2 in a subtree delegated to it, as systemd's Delegate=yes
// does; on v1 in groups root chowned to it), a grain starts on its first
// request and serves, gets its memory and pids limits, keeps its data,
// idles out and frees its cgroup; its /var is measured by the node, which
// cannot mount an image for it.
func TestGrainLifecycleUnprivileged(t *testing.T) {
	if !sandboxtest.InRerun() {
		uid, gid := sandboxtest.UnprivilegedUser(t)
		sandboxtest.RerunAs(t, uid, gid, appsEnv+"="+testApps(t))
		return
	}
	if os.Geteuid() == 0 {
		t.Fatal("the re-run is still root")
	}
	n := startNode(t, func(c *Config) { c.GrainIdle = 500 * time.Millisecond })
	if n.runner.Mode() != "unprivileged" {
		t.Fatalf("sandbox mode %q, want unprivileged", n.runner.Mode())
	}
	id, origin := n.newGrain("echo")
	if code, body := n.get(origin + "/write?v=kept"); code != 200 {
		t.Fatalf("write: %d %s", code, body)
	}
	sb := n.grains.SandboxOf(id)
	if sb == nil {
		t.Fatal("grain not running after a request")
	}
	cgroups := sb.CgroupPaths()
	if n.runner.Cgroups() == "none" || len(cgroups) == 0 {
		t.Fatalf("no cgroup for the grain (cgroups: %s): its limits are not applied", n.runner.Cgroups())
	}
	limited := false
	for _, p := range cgroups {
		for _, f := range []string{"memory.max", "memory.limit_in_bytes"} {
			b, err := os.ReadFile(filepath.Join(p, f))
			if v := strings.TrimSpace(string(b)); err == nil && v != "max" && v != "9223372036854771712" {
				limited = true
			}
		}
	}
	if !limited {
		t.Errorf("no memory limit in the grain's cgroups %v", cgroups)
	}
	if _, _, enforced, err := n.grains.DiskUse(id); err != nil || enforced {
		t.Errorf("an unprivileged grain's disk: enforced %v, %v; want measured", enforced, err)
	}
	waitFor(t, 10*time.Second, "idle stop", func() bool { return !n.grains.Running(id) })
	<-sb.Done()
	waitFor(t, 10*time.Second, "cgroup removal", func() bool {
		for _, p := range cgroups {
			if _, err := os.Stat(p); err == nil {
				return false
			}
		}
		return true
	})
	if code, body := n.get(origin + "/read"); code != 200 || body != "kept" {
		t.Errorf("read after the idle stop: %d %q", code, body)
	}
}
