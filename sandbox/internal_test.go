package sandbox

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCgroupV2Kill checks that a v2 group's cgroup.kill ends everything in
// it, with a process placed by clone3(CLONE_INTO_CGROUP).
func TestCgroupV2Kill(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	mnt, err := cgroup2Mount() // /sys/fs/cgroup on a v2 host, .../unified on a hybrid one
	if err != nil {
		t.Skip("no cgroup2 mount: ", err)
	}
	parent := filepath.Join(mnt, "erg-kill-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(parent)
	cgs, err := v2Override(parent)
	if err != nil {
		t.Fatal(err)
	}
	l := Limits{}.withDefaults()
	g, err := cgs.create("k", &l)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := g.openDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: fd}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	procs, _ := os.ReadFile(filepath.Join(g.dirs[0], "cgroup.procs"))
	if strings.TrimSpace(string(procs)) != strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("cgroup.procs = %q, want %d", procs, cmd.Process.Pid)
	}
	if !g.kill() {
		t.Fatal("cgroup.kill not available")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ws := cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Errorf("process ended with %v, want SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		t.Fatal("cgroup.kill did not kill the process")
	}
	if err := g.remove(); err != nil {
		t.Fatal(err)
	}
}

// fakeInit is the init's end of a control channel to a Sandbox that has
// no process: the test plays a broken or malicious init.
func fakeInit(t *testing.T) (*Sandbox, int) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "host")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := &Sandbox{
		name:       "fake",
		log:        slog.New(slog.DiscardHandler),
		cg:         &cgroup{version: "none"},
		ctrl:       c.(*net.UnixConn),
		idle:       make(chan struct{}),
		answered:   make(chan struct{}),
		started:    make(chan initMsg, 1),
		pending:    map[uint32]chan dialResult{},
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	go s.readLoop()
	t.Cleanup(func() {
		s.ctrl.Close()
		unix.Close(fds[1])
		<-s.readerDone
	})
	return s, fds[1]
}

func openFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestHostSurvivesBadInit: whatever the init sends back, a dial fails
// cleanly, no fd leaks, and a protocol violation ends the sandbox.
func TestHostSurvivesBadInit(t *testing.T) {
	tcp := func(t *testing.T) int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		f, _ := c.(*net.TCPConn).File()
		t.Cleanup(func() { f.Close() })
		return int(f.Fd())
	}
	pipe := func(t *testing.T) int {
		r, w, _ := os.Pipe()
		t.Cleanup(func() { r.Close(); w.Close() })
		return int(r.Fd())
	}
	udp := func(t *testing.T) int {
		fd, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		t.Cleanup(func() { unix.Close(fd) })
		return fd
	}
	tests := []struct {
		name      string
		reply     func(t *testing.T, id uint32) (msg []byte, fds []int)
		wantOK    bool
		wantBroke bool
	}{
		{"valid", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id, 0), []int{tcp(t)} }, true, false},
		{"refused", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id, uint32(unix.ECONNREFUSED)), nil }, false, false},
		{"two-fds", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id, 0), []int{tcp(t), tcp(t)} }, false, true},
		{"no-fd", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id, 0), nil }, false, true},
		{"pipe", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id, 0), []int{pipe(t)} }, false, true},
		{"udp", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id, 0), []int{udp(t)} }, false, true},
		{"error-with-fd", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id, 1), []int{tcp(t)} }, false, true},
		{"unissued-id", func(t *testing.T, id uint32) ([]byte, []int) { return dialReplyMsg(id+1000, 0), []int{tcp(t)} }, false, true},
		{"unknown-type", func(t *testing.T, id uint32) ([]byte, []int) { return []byte{'?', 1, 2}, nil }, false, true},
		{"short", func(t *testing.T, id uint32) ([]byte, []int) { return []byte{msgDial, 1}, nil }, false, true},
		{"huge", func(t *testing.T, id uint32) ([]byte, []int) { return make([]byte, maxCtrl+100), nil }, false, true},
		{"many-fds", func(t *testing.T, id uint32) ([]byte, []int) {
			var fds []int
			for range 20 {
				fds = append(fds, pipe(t))
			}
			return dialReplyMsg(id, 0), fds
		}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, initFd := fakeInit(t)
			// Build what is sent first, so its fds are not counted as leaks.
			msg, fds := tt.reply(t, 0)
			before := openFds(t)
			go func() {
				buf := make([]byte, 64)
				if _, _, _, _, err := unix.Recvmsg(initFd, buf, nil, 0); err != nil {
					return
				}
				var oob []byte
				if len(fds) > 0 {
					oob = unix.UnixRights(fds...)
				}
				unix.Sendmsg(initFd, msg, oob, nil, 0)
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := s.Dial(ctx, 80)
			if tt.wantOK != (err == nil) {
				t.Fatalf("Dial: %v", err)
			}
			if c != nil {
				c.Close()
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatal("Dial hung")
			}
			if tt.wantBroke {
				<-s.readerDone
				if s.protoErr == nil {
					t.Error("protocol violation not recorded")
				}
			}
			if after := openFds(t); after != before {
				t.Errorf("%d fds open after, %d before: leaked", after, before)
			}
		})
	}
}
