// Package appkittest runs a sample app's real binary in its tests, the way
// a grain runs it: built from the package under test, told its port and
// data dir through the environment, and stopped with SIGTERM.
package appkittest

import (
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Binary is the app's binary, running.
type Binary struct {
	URL  string // http://127.0.0.1:PORT
	Port int
	Dir  string // its ERG_VAR

	cmd     *exec.Cmd
	logs    strings.Builder
	exited  chan struct{}
	exitErr error
}

// Start builds the package in the current directory and runs it with a
// free loopback port, a fresh data dir and env (NAME=value entries) added
// to its environment, returning once it accepts connections. The test is
// skipped in -short mode.
func Start(t *testing.T, env ...string) *Binary {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "app")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	b := &Binary{Port: freePort(t), Dir: t.TempDir(), exited: make(chan struct{})}
	b.URL = "http://127.0.0.1:" + strconv.Itoa(b.Port)
	b.cmd = exec.Command(bin)
	b.cmd.Env = append(append(os.Environ(), "PORT="+strconv.Itoa(b.Port), "ERG_VAR="+b.Dir), env...)
	b.cmd.Stderr = &b.logs
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		b.exitErr = b.cmd.Wait()
		close(b.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-b.exited:
		default:
			b.cmd.Process.Kill()
			<-b.exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(b.Port))
		if err == nil {
			c.Close()
			return b
		}
		select {
		case <-b.exited:
			t.Fatalf("the app exited before serving: %v\n%s", b.exitErr, b.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 10s: %v\n%s", err, b.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop sends SIGTERM and fails the test unless the app exits 0 within
// ten seconds.
func (b *Binary) Stop(t *testing.T) {
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-b.exited:
		if b.exitErr != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", b.exitErr, b.logs.String())
		}
	case <-time.After(10 * time.Second):
		b.cmd.Process.Kill()
		<-b.exited
		t.Fatalf("still running 10s after SIGTERM\n%s", b.logs.String())
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// User is an identity the node's proxy would assert for a request.
type User struct {
	Name        string
	Permissions string // comma-separated, as in X-Erg-Permissions
}

// Header returns the identity headers the proxy would set for u.
func (u User) Header() http.Header {
	h := http.Header{}
	h.Set("X-Erg-Username", u.Name)
	h.Set("X-Erg-User-Id", "id-"+u.Name)
	h.Set("X-Erg-Session-Id", "session-"+u.Name)
	h.Set("X-Erg-Permissions", u.Permissions)
	return h
}
