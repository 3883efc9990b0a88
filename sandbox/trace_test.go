package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// traceHelperEnv makes the test binary, started in a development sandbox,
// run traceHelper instead of the tests.
const traceHelperEnv = "ERG_TRACE_HELPER"

func init() {
	switch os.Getenv(traceHelperEnv) {
	case "1":
		traceHelper()
		os.Exit(0)
	case "stat":
		statLoop()
		os.Exit(0)
	}
}

// statLoop stats one file many times and prints the time per call.
func statLoop() {
	const n = 20000
	var st unix.Stat_t
	start := time.Now()
	for range n {
		unix.Stat("/etc/hostname", &st)
	}
	fmt.Println(time.Since(start).Nanoseconds() / n)
}

// traceHelper makes the calls TestTrace expects to see, and reports on
// stdout what its writes to the host's dirs did.
func traceHelper() {
	// Relative to a directory fd.
	dir, err := syscall.Open("/etc", syscall.O_RDONLY|syscall.O_DIRECTORY, 0)
	if err != nil {
		fmt.Println("open /etc:", err)
		return
	}
	var st unix.Stat_t
	_ = fstatat(dir, "erg-trace-dirfd-probe", &st)
	// Relative to the cwd.
	if err := os.Chdir("/usr"); err != nil {
		fmt.Println("chdir /usr:", err)
		return
	}
	os.Stat("erg-trace-cwd-probe")
	// By a grandchild: sh runs cat.
	exec.Command("/bin/sh", "-c", "cat /etc/erg-trace-child-probe 2>/dev/null; true").Run()
	for _, p := range []string{"/usr/erg-trace-write", "/etc/erg-trace-write", "/erg-trace-write", "/var/ok"} {
		err := os.WriteFile(p, []byte("x"), 0o644)
		fmt.Printf("write %s: %v\n", p, errName(err))
	}
}

func fstatat(dirfd int, name string, st *unix.Stat_t) error {
	return unix.Fstatat(dirfd, name, st, 0)
}

func errName(err error) string {
	var errno syscall.Errno
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &errno):
		return errno.Error()
	}
	return err.Error()
}

// hostDirs are the host dirs a development sandbox shows in these tests.
var hostDirs = []string{"/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc"}

// TestTrace runs the test binary itself in a development sandbox with the
// host's system dirs and checks what the tracer saw: a path relative to a
// directory fd, one relative to the cwd, one opened by a grandchild, and
// the programs executed; and that the host dirs are read-only.
func TestTrace(t *testing.T) {
	testTrace(t, newRunner(t, sandbox.Config{})) // through a pooled zygote
}

// TestTraceUnprivileged does the same as the user ergtest, from a cold
// start.
func TestTraceUnprivileged(t *testing.T) {
	if !sandboxtest.InRerun() {
		uid, gid := sandboxtest.UnprivilegedUser(t)
		sandboxtest.RerunAs(t, uid, gid)
		return
	}
	r := newRunner(t, sandbox.Config{Zygotes: -1})
	if r.Mode() != "unprivileged" {
		t.Fatalf("mode %s as uid %d", r.Mode(), os.Getuid())
	}
	testTrace(t, r)
}

func testTrace(t *testing.T, r *sandbox.Runner) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("", "erg-devroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	os.Chmod(root, 0o755)
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "helper"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var out bytes.Buffer
	spec := sandbox.Spec{
		Name:   "trace",
		Root:   root,
		Var:    sandboxtest.VarDir(t),
		Args:   []string{"/helper"},
		Env:    []string{traceHelperEnv + "=1"},
		Limits: testLimits,
		Stdout: &out,
		Stderr: testWriter{t},
		HostRO: hostDirs,
		Trace: func(p string) {
			mu.Lock()
			seen[p] = true
			mu.Unlock()
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sb, err := r.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-sb.Done():
	case <-ctx.Done():
		stop(t, sb)
		t.Fatal("helper did not finish")
	}
	if err := sb.Err(); err != nil {
		t.Fatalf("helper: %v; output %s", err, out.String())
	}
	mu.Lock()
	defer mu.Unlock()
	for _, want := range []string{
		"/helper",                    // executed by the init
		"/etc/erg-trace-dirfd-probe", // fstatat(dirfd of /etc, relative)
		"/usr/erg-trace-cwd-probe",   // stat relative to cwd /usr
		"/bin/sh",                    // executed by the helper
		"/etc/erg-trace-child-probe", // opened by cat, the helper's grandchild
	} {
		if !seen[want] {
			var all []string
			for p := range seen {
				all = append(all, p)
			}
			slices.Sort(all)
			t.Errorf("trace lacks %s; it has %d paths:\n%s", want, len(all), strings.Join(all, "\n"))
		}
	}
	t.Logf("traced %d distinct paths", len(seen))
	got := out.String()
	t.Logf("helper: %s", got)
	for _, want := range []string{
		"write /usr/erg-trace-write: read-only file system",
		"write /etc/erg-trace-write: read-only file system",
		"write /erg-trace-write: read-only file system",
		"write /var/ok: ok",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("helper output lacks %q:\n%s", want, got)
		}
	}
	for _, p := range []string{"/usr/erg-trace-write", "/etc/erg-trace-write"} {
		if _, err := os.Lstat(p); err == nil {
			os.Remove(p)
			t.Errorf("the sandbox wrote the host's %s", p)
		}
	}
}

// TestBatteryTraced runs the escape battery against a traced grain:
// tracing only records, and leaves every wall standing.
func TestBatteryTraced(t *testing.T) {
	var mu sync.Mutex
	n := 0
	runBattery(t, newRunner(t, sandbox.Config{}), func(s *sandbox.Spec) {
		s.Trace = func(string) {
			mu.Lock()
			n++
			mu.Unlock()
		}
	})
	mu.Lock()
	defer mu.Unlock()
	if n == 0 {
		t.Error("the traced probe made no traced call")
	}
}

// TestDevSpecRefused checks the development spec's own checks.
func TestDevSpecRefused(t *testing.T) {
	r := newRunner(t, sandbox.Config{Zygotes: -1})
	root := t.TempDir()
	os.Mkdir(filepath.Join(root, "usr"), 0o755)
	for _, c := range []struct {
		hostRO []string
		want   string
	}{
		{[]string{"/usr/lib"}, "top-level"},
		{[]string{"usr"}, "top-level"},
		{[]string{"/var"}, "sandbox's own"},
		{[]string{"/etc", "/etc"}, "twice"},
		{[]string{"/usr"}, "would hide the host's /usr"},
	} {
		_, err := r.Start(context.Background(), sandbox.Spec{
			Name: "bad", Root: root, Var: sandboxtest.VarDir(t), Args: []string{"/bin/true"}, HostRO: c.hostRO,
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("HostRO %q: err %v, want %q", c.hostRO, err, c.want)
		}
	}
}

// BenchmarkTracedStat measures what tracing costs a call it stops: stat(2)
// in a development sandbox with and without Trace (the baseline), timed
// inside the sandbox.
func BenchmarkTracedStat(b *testing.B) {
	r := newRunner(b, sandbox.Config{Zygotes: -1})
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	root, err := os.MkdirTemp("", "erg-devroot-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(root)
	os.Chmod(root, 0o755)
	data, _ := os.ReadFile(exe)
	os.WriteFile(filepath.Join(root, "helper"), data, 0o755)
	run := func(trace bool) float64 {
		var out bytes.Buffer
		spec := sandbox.Spec{
			Name: "trace-bench", Root: root, Var: sandboxtest.VarDir(b), Args: []string{"/helper"},
			Env: []string{traceHelperEnv + "=stat"}, Limits: testLimits, Stdout: &out, HostRO: hostDirs,
		}
		if trace {
			spec.Trace = func(string) {}
		}
		sb, err := r.Start(context.Background(), spec)
		if err != nil {
			b.Fatal(err)
		}
		<-sb.Done()
		var ns float64
		if _, err := fmt.Sscan(out.String(), &ns); err != nil || sb.Err() != nil {
			b.Fatalf("helper: %v %v %q", err, sb.Err(), out.String())
		}
		return ns
	}
	var plain, traced float64
	for b.Loop() {
		plain += run(false)
		traced += run(true)
	}
	b.ReportMetric(plain/float64(b.N), "ns/stat-untraced")
	b.ReportMetric(traced/float64(b.N), "ns/stat-traced")
}
