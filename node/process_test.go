package node

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"erg"
	"erg/internal/testkit"
)

// ergProcess is an `erg run` started as its own process.
type ergProcess struct {
	t    *testing.T
	bin  string
	data string
	cmd  *exec.Cmd
	env  []string // added to the client commands' environment
}

// overHTTP is p with its client commands sent to the API at url with an
// API token (ERG_URL, ERG_TOKEN) instead of over the control socket: the
// environment is the command's own, so tests that use it stay parallel.
func (p *ergProcess) overHTTP(url, token string) *ergProcess {
	return &ergProcess{t: p.t, bin: p.bin, data: p.data, env: []string{"ERG_URL=" + url, "ERG_TOKEN=" + token}}
}

// ergBinary builds the erg command; a test that runs it is a process
// test, which -short skips.
func ergBinary(t *testing.T) string {
	testkit.SkipShort(t, "erg processes")
	return goBuild(t, "./cmd/erg", filepath.Join(sharedBuildDir(t), "bin", "erg"))
}

// startErg runs `erg run` on a free port and waits until its socket answers.
func startErg(t *testing.T, data string) *ergProcess {
	t.Helper()
	p := &ergProcess{t: t, bin: ergBinary(t), data: data}
	p.start()
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	return p
}

func (p *ergProcess) start() {
	p.t.Helper()
	apps := testApps(p.t)
	p.cmd = exec.Command(p.bin, "run", "--data", p.data, "--listen", "127.0.0.1:0", "--apps", apps, "--owner", "alice",
		"--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1")
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			p.t.Log("erg:", sc.Text())
		}
	}()
	c := erg.NewClient(SocketPath(p.data))
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := c.Status(context.Background()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatal("erg run did not start")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *ergProcess) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	p.cmd.Process.Signal(sig)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.cmd.Process.Kill()
		<-done
		p.t.Errorf("erg run did not exit on %v", sig)
	}
	p.cmd = nil
}

// erg runs a client command and returns its stdout; it fails the test if
// the command fails, unless wantErr.
func (p *ergProcess) erg(wantErr bool, args ...string) string {
	p.t.Helper()
	cmd := exec.Command(p.bin, append([]string{"--data", p.data}, args...)...)
	if p.env != nil {
		cmd.Env = append(os.Environ(), p.env...)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if (err != nil) != wantErr {
		p.t.Fatalf("erg %s: err=%v stderr=%s", strings.Join(args, " "), err, stderr.String())
	}
	if wantErr {
		return stderr.String()
	}
	return string(out)
}
