package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}

const probePort = 8080

// newRunner returns a runner for the current uid, or skips the test if
// sandboxes cannot run here.
func newRunner(t testing.TB, cfg sandbox.Config) *sandbox.Runner {
	t.Helper()
	if os.Geteuid() != 0 && !sandboxtest.InRerun() {
		t.Skip("sandbox tests run as root (and re-run themselves as an unprivileged user)")
	}
	r, err := sandbox.NewRunner(cfg)
	if err != nil {
		if strings.Contains(err.Error(), "cannot create the sandbox namespaces") {
			t.Skipf("the kernel forbids the namespaces: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close runner: %v", err)
		}
	})
	return r
}

var testLimits = sandbox.Limits{MemoryBytes: 64 << 20, Pids: 64, NoFile: 512, TmpBytes: 8 << 20}

func probeSpec(t testing.TB, name, root string) sandbox.Spec {
	return sandbox.Spec{
		Name:   name,
		Root:   root,
		Var:    sandboxtest.VarDir(t),
		Args:   sandboxtest.ProbeArgs,
		Env:    []string{"PORT=" + strconv.Itoa(probePort)},
		Limits: testLimits,
		Stderr: testWriter{t},
	}
}

// testWriter sends app output to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Logf("app: %s", strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

func start(t testing.TB, r *sandbox.Runner, spec sandbox.Spec) *sandbox.Sandbox {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sb, err := r.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop(t, sb) })
	return sb
}

func stop(t testing.TB, sb *sandbox.Sandbox) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := sb.Stop(ctx); err != nil {
		t.Errorf("stop: %v", err)
	}
}

// get makes an HTTP GET to the probe through the sandbox's dialer.
func get(ctx context.Context, sb *sandbox.Sandbox, path string) (int, []byte, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx, probePort) },
		DisableKeepAlives: true,
	}}
	req, err := http.NewRequestWithContext(ctx, "GET", "http://grain"+path, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func mustGet(t testing.TB, sb *sandbox.Sandbox, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	status, body, err := get(ctx, sb, path)
	if err != nil || status != 200 {
		t.Fatalf("GET %s: %d %v %s", path, status, err, body)
	}
	return string(body)
}

// waitReady polls until the probe answers; Start returns when the app is
// exec'd, not when it listens.
func waitReady(t testing.TB, sb *sandbox.Sandbox) {
	t.Helper()
	waitReadyWithin(t, sb, 30*time.Second) // an emulated VM (make test-cgroup2) is slow
}

func waitReadyWithin(t testing.TB, sb *sandbox.Sandbox, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		status, _, err := get(ctx, sb, "/")
		cancel()
		if err == nil && status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe never answered: %v", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func gone(t testing.TB, paths []string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("cgroup dir %s still there after the sandbox ended (%v)", p, err)
		}
	}
}

func TestStartDialStop(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	t.Logf("mode %s, cgroups %s", r.Mode(), r.Cgroups())
	sb := start(t, r, probeSpec(t, "start-dial-stop", sandboxtest.BuildProbeTree(t)))
	waitReady(t, sb)
	if got := mustGet(t, sb, "/"); got != "ok" {
		t.Errorf("GET / = %q", got)
	}
	if sb.Pid() <= 0 {
		t.Errorf("Pid() = %d", sb.Pid())
	}
	paths := sb.CgroupPaths()
	if r.Cgroups() != "none" {
		if len(paths) == 0 {
			t.Fatal("no cgroup paths")
		}
		for _, p := range paths {
			procs, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(sb.Pid())) {
				t.Errorf("init %d not in %s: %q", sb.Pid(), p, procs)
			}
		}
		if n, err := sb.MemoryUsage(); err != nil || n <= 0 {
			t.Errorf("MemoryUsage() = %d, %v", n, err)
		}
	}
	stop(t, sb)
	select {
	case <-sb.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
	if !errors.Is(sb.Err(), sandbox.ErrStopped) {
		t.Errorf("Err() = %v, want ErrStopped", sb.Err())
	}
	gone(t, paths)
	if syscall.Kill(sb.Pid(), 0) == nil {
		t.Errorf("init %d still alive", sb.Pid())
	}
	stop(t, sb) // idempotent
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := sb.Dial(ctx, probePort); err == nil {
		t.Error("Dial after Stop worked")
	}
}

func TestConcurrentSandboxes(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	root := sandboxtest.BuildProbeTree(t)
	const n = 4
	sbs := make([]*sandbox.Sandbox, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sb, err := r.Start(ctx, probeSpec(t, fmt.Sprintf("concurrent-%d", i), root))
			if err != nil {
				t.Error(err)
				return
			}
			sbs[i] = sb
		})
	}
	wg.Wait()
	if t.Failed() {
		for _, sb := range sbs {
			if sb != nil {
				stop(t, sb)
			}
		}
		t.FailNow()
	}
	boots := map[string]bool{}
	var mu sync.Mutex
	for _, sb := range sbs {
		wg.Go(func() {
			waitReady(t, sb)
			for range 10 {
				body := mustGet(t, sb, "/id")
				mu.Lock()
				boots[body[strings.Index(body, `"boot"`):][:26]] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(boots) != n {
		t.Errorf("%d distinct apps answered, want %d", len(boots), n)
	}
	for _, sb := range sbs {
		wg.Go(func() {
			paths := sb.CgroupPaths()
			stop(t, sb)
			gone(t, paths)
		})
	}
	wg.Wait()
}

func TestAppExit(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	root := sandboxtest.BuildProbeTree(t)
	tests := []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"exit-code", sandboxtest.ProbeArgs, []string{"PORT=bad"}, "app exited with code 1"},
		{"signal", []string{"/bin/probe", "int80"}, nil, "app killed by signal 31 (bad system call)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := probeSpec(t, "exit-"+tt.name, root)
			spec.Args, spec.Env = tt.args, tt.env
			sb := start(t, r, spec)
			paths := sb.CgroupPaths()
			select {
			case <-sb.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("Done not closed after the app exited")
			}
			var ee *sandbox.ExitError
			if err := sb.Err(); !errors.As(err, &ee) || err.Error() != tt.want {
				t.Errorf("Err() = %v, want %q", err, tt.want)
			}
			gone(t, paths)
		})
	}
}

func TestStopKillsStubbornApp(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	spec := probeSpec(t, "stubborn", sandboxtest.BuildProbeTree(t))
	spec.Env = append(spec.Env, "PROBE_IGNORE_TERM=1")
	sb := start(t, r, spec)
	waitReady(t, sb)
	paths := sb.CgroupPaths()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := sb.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 150*time.Millisecond || d > 3*time.Second {
		t.Errorf("Stop took %v; want the 200ms grace period, then a kill", d)
	}
	if !errors.Is(sb.Err(), sandbox.ErrStopped) {
		t.Errorf("Err() = %v", sb.Err())
	}
	gone(t, paths)
}

// ownCgroupDirs are where a v1 runner puts a sandbox called name.
func ownCgroupDirs(t *testing.T, name string) []string {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 && (parts[1] == "memory" || parts[1] == "pids") {
			dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parts[1], parts[2], "erg", name))
		}
	}
	return dirs
}

func TestStartErrors(t *testing.T) {
	r := newRunner(t, sandbox.Config{})
	good := sandboxtest.BuildProbeTree(t)
	noProc := sandboxtest.BuildProbeTree(t)
	os.Remove(filepath.Join(noProc, "proc"))
	dangling := sandboxtest.BuildProbeTree(t)
	os.Symlink("/nonexistent", filepath.Join(dangling, "bin", "dangling"))
	varLink := sandboxtest.BuildProbeTree(t)
	os.Remove(filepath.Join(varLink, "var"))
	os.Symlink("/etc", filepath.Join(varLink, "var"))

	tests := []struct {
		name   string
		edit   func(*sandbox.Spec)
		errHas []string
	}{
		{"bad-name", func(s *sandbox.Spec) { s.Name = "Bad/Name" }, []string{"sandbox name"}},
		{"no-proc", func(s *sandbox.Spec) { s.Root = noProc }, []string{noProc, `"proc"`}},
		{"var-symlink", func(s *sandbox.Spec) { s.Root = varLink }, []string{"must be a plain directory"}},
		{"missing-program", func(s *sandbox.Spec) { s.Args = []string{"/bin/missing"} }, []string{"/bin/missing", "not found"}},
		{"relative-program", func(s *sandbox.Spec) { s.Args = []string{"probe"} }, []string{"absolute path"}},
		{"dangling-program", func(s *sandbox.Spec) { s.Root, s.Args = dangling, []string{"/bin/dangling"} }, []string{"start app /bin/dangling", "no such file"}},
		{"missing-var", func(s *sandbox.Spec) { s.Var = "/nonexistent/var" }, []string{"/nonexistent/var"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := probeSpec(t, "err-"+tt.name, good)
			tt.edit(&spec)
			sb, err := r.Start(context.Background(), spec)
			if err == nil {
				stop(t, sb)
				t.Fatal("Start worked")
			}
			for _, s := range tt.errHas {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if r.Cgroups() == "v1" {
				gone(t, ownCgroupDirs(t, spec.Name))
			}
		})
	}
	t.Run("duplicate-name", func(t *testing.T) {
		start(t, r, probeSpec(t, "dup", good))
		if _, err := r.Start(context.Background(), probeSpec(t, "dup", good)); err == nil || !strings.Contains(err.Error(), "already running") {
			t.Errorf("second Start of the same name: %v", err)
		}
	})
}

// TestNodeDeathKillsSandbox: when the process that started a sandbox dies
// without stopping it, the sandbox dies too (Pdeathsig on the init, whose
// death ends its pid namespace).
func TestNodeDeathKillsSandbox(t *testing.T) {
	const helperEnv = "ERG_SANDBOX_TEST_HELPER"
	if os.Getenv(helperEnv) == "1" {
		r := newRunner(t, sandbox.Config{})
		sb, err := r.Start(context.Background(), probeSpec(t, "orphan", sandboxtest.BuildProbeTree(t)))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("init-pid %d\n", sb.Pid())
		select {} // the parent kills us
	}
	newRunner(t, sandbox.Config{}) // skip where the helper could not run
	cmd := exec.Command(os.Args[0], "-test.run=^TestNodeDeathKillsSandbox$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Fscanf(out, "init-pid %d\n", &pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not start a sandbox: %v", err)
	}
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("init %d not running", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("init %d outlived the process that started it", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Nobody removed its cgroups; a node does that for a name when it
	// starts it again. Here the test does.
	for _, d := range ownCgroupDirs(t, "orphan") {
		for range 100 {
			if err := os.Remove(d); err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}
