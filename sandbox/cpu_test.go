package sandbox_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// cpuDir is the sandbox's cgroup dir holding its cpu files.
func cpuDir(t testing.TB, sb *sandbox.Sandbox) string {
	t.Helper()
	for _, d := range sb.CgroupPaths() {
		if _, err := os.Stat(filepath.Join(d, "cpu.max")); err == nil {
			return d
		}
		if _, err := os.Stat(filepath.Join(d, "cpu.cfs_quota_us")); err == nil {
			return d
		}
	}
	t.Fatalf("no cpu controller among %v", sb.CgroupPaths())
	return ""
}

func readTrim(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestCPULimits: the weight and the ceiling reach the cgroup, and an app
// spinning on every core under a ceiling is throttled by the kernel.
func TestCPULimits(t *testing.T) {
	for _, z := range []int{1, -1} {
		r := newRunner(t, sandbox.Config{Zygotes: z})
		if !strings.HasPrefix(r.CPULimits(), "on") {
			t.Skipf("CPU limits: %s", r.CPULimits())
		}
		spec := probeSpec(t, "cpu", sandboxtest.BuildProbeTree(t))
		spec.Limits.CPUWeight = 50
		spec.Limits.CPUPercent = 2 // low enough to be hit even on a loaded machine
		// The ceiling holds from the start: the init's setup and the
		// probe's own start run under it, which in an emulated VM (make
		// test-cgroup2) takes many seconds.
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		sb, err := r.Start(ctx, spec)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { stop(t, sb) })
		waitReadyWithin(t, sb, 90*time.Second)
		d := cpuDir(t, sb)
		throttled := func() int {
			for line := range strings.Lines(readTrim(t, filepath.Join(d, "cpu.stat"))) {
				if v, ok := strings.CutPrefix(strings.TrimSpace(line), "nr_throttled "); ok {
					n, _ := strconv.Atoi(v)
					return n
				}
			}
			t.Fatal("no nr_throttled in cpu.stat")
			return 0
		}
		if _, err := os.Stat(filepath.Join(d, "cpu.max")); err == nil {
			if got := readTrim(t, filepath.Join(d, "cpu.max")); got != "2000 100000" {
				t.Errorf("cpu.max = %q, want 2000 100000", got)
			}
			if got := readTrim(t, filepath.Join(d, "cpu.weight")); got != "50" {
				t.Errorf("cpu.weight = %q, want 50", got)
			}
		} else {
			if got := readTrim(t, filepath.Join(d, "cpu.cfs_quota_us")); got != "2000" {
				t.Errorf("cpu.cfs_quota_us = %q, want 2000", got)
			}
			if got := readTrim(t, filepath.Join(d, "cpu.shares")); got != "512" {
				t.Errorf("cpu.shares = %q, want 512 (weight 50)", got)
			}
		}
		before := throttled()
		sctx, scancel := context.WithTimeout(context.Background(), 90*time.Second)
		status, body, err := get(sctx, sb, "/spin?ms=1000&threads="+strconv.Itoa(runtime.NumCPU()))
		scancel()
		if err != nil || status != 200 {
			t.Fatalf("GET /spin: %d %v %s", status, err, body)
		}
		if after := throttled(); after <= before {
			t.Errorf("spinning on every core under a 2%% ceiling: nr_throttled %d -> %d, want it to grow", before, after)
		}
		stop(t, sb)
	}
}

// BenchmarkCPUIsolation: one grain spins on every core while another's
// request latency is measured (p50, p99), beside the same with nobody
// spinning, and with the spinner unlimited (default weight, no ceiling).
// The spinner is limited to half the cores with a low weight.
func BenchmarkCPUIsolation(b *testing.B) {
	r := newRunner(b, sandbox.Config{Zygotes: -1})
	if !strings.HasPrefix(r.CPULimits(), "on") {
		b.Skipf("CPU limits: %s", r.CPULimits())
	}
	root := sandboxtest.BuildProbeTree(b)
	victim := start(b, r, probeSpec(b, "victim", root))
	waitReady(b, victim)
	measure := func(b *testing.B, spinner *sandbox.Limits) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if spinner != nil {
			spec := probeSpec(b, "spinner", root)
			spec.Limits = *spinner
			sp := start(b, r, spec)
			waitReady(b, sp)
			defer stop(b, sp)
			for range 2 { // keep it spinning for the whole run
				go func() {
					for ctx.Err() == nil {
						get(ctx, sp, "/spin?ms=1000&threads="+strconv.Itoa(2*runtime.NumCPU()))
					}
				}()
			}
			time.Sleep(300 * time.Millisecond)
		}
		var lat []time.Duration
		for b.Loop() {
			t0 := time.Now()
			status, _, err := get(context.Background(), victim, "/")
			if err != nil || status != 200 {
				b.Fatalf("GET /: %d %v", status, err)
			}
			lat = append(lat, time.Since(t0))
		}
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2])/1e6, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100])/1e6, "p99-ms")
	}
	b.Run("idle", func(b *testing.B) { measure(b, nil) })
	b.Run("spinner-unlimited", func(b *testing.B) { measure(b, &sandbox.Limits{}) })
	b.Run("spinner-limited", func(b *testing.B) {
		measure(b, &sandbox.Limits{CPUWeight: 10, CPUPercent: 50 * runtime.NumCPU()})
	})
}

// TestCPUGroupLayout: as root (v1 and v2) and unprivileged in a delegated
// v2 subtree, the node's process runs in a cpu group of its own weighted
// ten times a sandbox's default, and each sandbox's cpu group sits beside
// it (a claimed zygote's too), not in one group that all sandboxes share.
// Unprivileged v1 keeps the delegated <own>/erg and the node where it is.
func TestCPUGroupLayout(t *testing.T) {
	for _, z := range []int{1, -1} {
		t.Run("zygotes-"+strconv.Itoa(z), func(t *testing.T) {
			checkCPULayout(t, newRunner(t, sandbox.Config{Zygotes: z}))
		})
	}
	t.Run("unprivileged", func(t *testing.T) {
		if !sandboxtest.InRerun() {
			uid, gid := sandboxtest.UnprivilegedUser(t)
			sandboxtest.RerunAs(t, uid, gid)
			return
		}
		for _, z := range []int{1, -1} {
			checkCPULayout(t, newRunner(t, sandbox.Config{Zygotes: z}))
		}
	})
}

func checkCPULayout(t *testing.T, r *sandbox.Runner) {
	t.Helper()
	if !strings.HasPrefix(r.CPULimits(), "on") {
		t.Skipf("CPU limits: %s", r.CPULimits())
	}
	node := r.NodeCgroup()
	if r.Cgroups() == "v1" && r.Mode() == "unprivileged" {
		if node != "" {
			t.Errorf("unprivileged v1: NodeCgroup() = %q, want none", node)
		}
		return
	}
	if node == "" {
		t.Fatalf("%s %s: the node is in no cpu group of its own", r.Mode(), r.Cgroups())
	}
	if procs := strings.Fields(readTrim(t, filepath.Join(node, "cgroup.procs"))); !slices.Contains(procs, strconv.Itoa(os.Getpid())) {
		t.Errorf("%s/cgroup.procs = %v, want this process (%d) in it", node, procs, os.Getpid())
	}
	weight := func(dir string) string {
		if r.Cgroups() == "v2" {
			return readTrim(t, filepath.Join(dir, "cpu.weight"))
		}
		return readTrim(t, filepath.Join(dir, "cpu.shares"))
	}
	nodeWant, sbWant := "300", "100"
	if r.Cgroups() == "v1" {
		nodeWant, sbWant = "3072", "1024"
	}
	if got := weight(node); got != nodeWant {
		t.Errorf("the node's group %s: weight %s, want %s", node, got, nodeWant)
	}
	sb := start(t, r, probeSpec(t, "layout", sandboxtest.BuildProbeTree(t)))
	waitReady(t, sb)
	d := cpuDir(t, sb)
	if filepath.Dir(d) != filepath.Dir(node) {
		t.Errorf("the sandbox's cpu group %s is not beside the node's %s", d, node)
	}
	if got := weight(d); got != sbWant {
		t.Errorf("the sandbox's group %s: weight %s, want %s", d, got, sbWant)
	}
	if procs := strings.Fields(readTrim(t, filepath.Join(d, "cgroup.procs"))); !slices.Contains(procs, strconv.Itoa(sb.Pid())) {
		t.Errorf("%s/cgroup.procs = %v, want the sandbox's init %d", d, procs, sb.Pid())
	}
	stop(t, sb)
}

// Nodes started and stopped side by side share the node's cpu group: a
// runner made while another process leaves the group (and removes it),
// and one closed as another's close removes it, both work.
func TestNodeGroupSharedByProcesses(t *testing.T) {
	const child = "ERG_TEST_NODE_GROUP_CHILD"
	if os.Getenv(child) != "" {
		for range 15 {
			r, err := sandbox.NewRunner(sandbox.Config{Zygotes: -1})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Fatalf("close runner: %v", err)
			}
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("the node's cpu group is made by root")
	}
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			cmd := exec.Command(os.Args[0], "-test.run=^TestNodeGroupSharedByProcesses$", "-test.count=1")
			cmd.Env = append(os.Environ(), child+"=1")
			out, err := cmd.CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%v: %s", err, out)
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error("a node's process starting and stopping beside others:", err)
		}
	}
}
