package sandbox

// The cold-start harness is test-only: it is compiled into the sandbox
// package's test binary (for BenchmarkColdStart, TestColdStart and the
// battery's cold-start run in package sandbox_test), not into erg.

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BenchApp is an app for ColdStart: a program in an app tree that answers
// GET / with 200 on 127.0.0.1:$PORT, or on the unix socket $LISTEN_UNIX
// when that is set. bwrap needs the socket: its network namespace cannot
// be reached from the host.
type BenchApp struct {
	Root string
	Args []string
}

// ColdStartStats are the cold-start times of one way of running the app.
type ColdStartStats struct {
	Mode     string // "plain" (no sandbox), "bwrap", "erg"
	N        int
	P50, P95 time.Duration
}

// ColdStartReport is what ColdStart measured.
type ColdStartReport struct {
	Modes []ColdStartStats
	// Ratio is erg's p50 over bwrap's; 0 when bwrap is not installed.
	Ratio float64
}

func (r ColdStartReport) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-6s %4s %9s %9s\n", "mode", "n", "p50 ms", "p95 ms")
	for _, m := range r.Modes {
		fmt.Fprintf(&b, "%-6s %4d %9.2f %9.2f\n", m.Mode, m.N, ms(m.P50), ms(m.P95))
	}
	if r.Ratio > 0 {
		fmt.Fprintf(&b, "p50 erg/bwrap: %.2f\n", r.Ratio)
	}
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// ColdStart measures n times, after 3 warm-up rounds, the time from "no
// process" to the app's first HTTP 200: run plainly, under bwrap (if
// installed, with equivalent isolation and the same seccomp filter), and
// in an erg sandbox reached through Sandbox.Dial. The modes alternate, so
// they share the machine's state; each start waits until the runner's
// zygote pool is refilled, so none shares the machine with that.
func ColdStart(ctx context.Context, r *Runner, app BenchApp, n int) (ColdStartReport, error) {
	cs, err := newColdStarter(r, app)
	if err != nil {
		return ColdStartReport{}, err
	}
	defer cs.close()
	modes := []string{"plain", "erg"}
	if cs.bwrap != "" {
		modes = []string{"plain", "bwrap", "erg"}
	}
	samples := map[string][]time.Duration{}
	for i := range n + 3 {
		for _, m := range modes {
			d, err := cs.once(ctx, m)
			if err != nil {
				return ColdStartReport{}, fmt.Errorf("cold start %s: %w", m, err)
			}
			if i >= 3 {
				samples[m] = append(samples[m], d)
			}
		}
	}
	var rep ColdStartReport
	for _, m := range modes {
		rep.Modes = append(rep.Modes, Stats(m, samples[m]))
	}
	if cs.bwrap != "" {
		rep.Ratio = float64(rep.Modes[2].P50) / float64(rep.Modes[1].P50)
	}
	return rep, nil
}

// Stats summarises samples by nearest-rank percentiles.
func Stats(mode string, samples []time.Duration) ColdStartStats {
	s := slices.Sorted(slices.Values(samples))
	pct := func(p int) time.Duration {
		if len(s) == 0 {
			return 0
		}
		i := (p*len(s)+99)/100 - 1
		return s[max(i, 0)]
	}
	return ColdStartStats{Mode: mode, N: len(s), P50: pct(50), P95: pct(95)}
}

// coldStarter runs single cold starts of a BenchApp.
type coldStarter struct {
	r      *Runner
	app    BenchApp
	varDir string // for erg; in root mode Start gives it to the sandbox uid
	bwVar  string // for bwrap, which keeps the node's uid
	bwrap  string // path, or "" if not installed
	name   string
	// keepVar: varDir is the caller's, not removed by close.
	keepVar bool
}

func newColdStarter(r *Runner, app BenchApp) (*coldStarter, error) {
	if len(app.Args) == 0 {
		return nil, errors.New("bench app has no Args")
	}
	var dirs [2]string
	for i := range dirs {
		d, err := os.MkdirTemp("", "erg-bench-var-")
		if err != nil {
			return nil, err
		}
		os.Chmod(d, 0o755)
		dirs[i] = d
	}
	b := make([]byte, 4)
	rand.Read(b)
	cs := &coldStarter{r: r, app: app, varDir: dirs[0], bwVar: dirs[1], name: "coldstart-" + hex.EncodeToString(b)}
	cs.bwrap, _ = exec.LookPath("bwrap")
	return cs, nil
}

func (cs *coldStarter) close() {
	if !cs.keepVar {
		os.RemoveAll(cs.varDir)
	}
	os.RemoveAll(cs.bwVar)
}

const benchPort = 8080

func (cs *coldStarter) once(ctx context.Context, mode string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Every mode starts on a quiet machine: not while the runner refills
	// its zygote pool after the previous erg start.
	if err := cs.r.waitPool(ctx); err != nil {
		return 0, err
	}
	switch mode {
	case "plain":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		t0 := time.Now()
		cmd := exec.Command(filepath.Join(cs.app.Root, cs.app.Args[0]), cs.app.Args[1:]...)
		cmd.Env = []string{"PORT=" + strconv.Itoa(port)}
		return cs.measure(ctx, t0, cmd, func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", "127.0.0.1:"+strconv.Itoa(port))
		})
	case "bwrap":
		sock := filepath.Join(cs.bwVar, "app.sock")
		os.Remove(sock)
		t0 := time.Now()
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer pr.Close()
		if _, err := pw.Write(SeccompProgram()); err != nil {
			pw.Close()
			return 0, err
		}
		pw.Close()
		args := append([]string{"--unshare-all", "--unshare-user", "--uid", "0", "--gid", "0",
			"--die-with-parent", "--new-session",
			"--ro-bind", cs.app.Root, "/", "--bind", cs.bwVar, "/var", "--tmpfs", "/tmp",
			"--dev", "/dev", "--proc", "/proc", "--cap-drop", "ALL", "--seccomp", "3", "--"}, cs.app.Args...)
		cmd := exec.Command(cs.bwrap, args...)

		cmd.Env = []string{"LISTEN_UNIX=/var/app.sock"}
		cmd.ExtraFiles = []*os.File{pr}
		return cs.measure(ctx, t0, cmd, func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		})
	case "erg":
		t0 := time.Now()
		sb, err := cs.r.Start(ctx, Spec{
			Name: cs.name, Root: cs.app.Root, Var: cs.varDir, Args: cs.app.Args,
			Env: []string{"PORT=" + strconv.Itoa(benchPort)},
		})
		if err != nil {
			return 0, err
		}
		d, err := pollHTTP(ctx, t0, func(ctx context.Context) (net.Conn, error) { return sb.Dial(ctx, benchPort) })
		sctx, scancel := context.WithTimeout(context.Background(), time.Second)
		defer scancel()
		sb.Stop(sctx)
		return d, err
	}
	return 0, fmt.Errorf("unknown mode %q", mode)
}

func (cs *coldStarter) measure(ctx context.Context, t0 time.Time, cmd *exec.Cmd, dial func(context.Context) (net.Conn, error)) (time.Duration, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	d, err := pollHTTP(ctx, t0, dial)
	cmd.Process.Kill()
	cmd.Wait()
	return d, err
}

// pollHTTP connects and sends GET / every 100µs until it gets a 200,
// and returns the time since t0.
func pollHTTP(ctx context.Context, t0 time.Time, dial func(context.Context) (net.Conn, error)) (time.Duration, error) {
	for {
		if ok, err := getOK(ctx, dial); ok {
			return time.Since(t0), nil
		} else if ctx.Err() != nil {
			return 0, fmt.Errorf("no HTTP 200: %w (last error: %v)", ctx.Err(), err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func getOK(ctx context.Context, dial func(context.Context) (net.Conn, error)) (bool, error) {
	c, err := dial(ctx)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\nHost: grain\r\n\r\n")); err != nil {
		return false, err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(line, "HTTP/1.0 200") || strings.HasPrefix(line, "HTTP/1.1 200"), nil
}

// ColdStartOnce is one cold start of app in mode ("plain", "bwrap" or
// "erg"), for benchmarks that do their own looping.
func ColdStartOnce(ctx context.Context, r *Runner, app BenchApp, mode string) (time.Duration, error) {
	cs, err := newColdStarter(r, app)
	if err != nil {
		return 0, err
	}
	defer cs.close()
	if mode == "bwrap" && cs.bwrap == "" {
		return 0, errors.New("bwrap is not installed")
	}
	return cs.once(ctx, mode)
}

// ColdStartOn is one cold start of app in an erg sandbox whose /var is
// varDir (say, a disk image the caller mounted there).
func ColdStartOn(ctx context.Context, r *Runner, app BenchApp, varDir string) (time.Duration, error) {
	cs, err := newColdStarter(r, app)
	if err != nil {
		return 0, err
	}
	defer cs.close()
	cs.varDir, varDir = varDir, cs.varDir
	defer os.RemoveAll(varDir)
	cs.keepVar = true
	return cs.once(ctx, "erg")
}
