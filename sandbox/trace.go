package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// File tracing (Spec.Trace) tells a developer which files their program
// uses, so that a package can hold exactly those (see `erg app dev`).
//
// It uses seccomp user notification. Before locking itself down, the init
// installs a second seccomp filter whose only verdict besides ALLOW is
// SECCOMP_RET_USER_NOTIF, for the calls that name a file (open, openat,
// openat2, execve, execveat, stat, lstat, newfstatat, statx, access,
// faccessat, faccessat2, readlink, readlinkat), and hands the filter's
// listener fd to the host over the control socket ('T'). The allow-list
// filter is installed after it with TSYNC, which copies both onto every
// thread; every process the app starts inherits them. For each call the
// host reads the path from /proc/<tid>/mem, resolves a relative one
// against the dirfd or cwd (read from /proc/<tid>/fd/N or cwd, which the
// kernel prints relative to the sandbox's own root), checks the
// notification is still live (SECCOMP_IOCTL_NOTIF_ID_VALID, so a reused
// pid cannot feed it another process's memory), and lets the call go on
// unchanged (SECCOMP_USER_NOTIF_FLAG_CONTINUE). It only records: the
// kernel reads the path again when the call continues, and the sandbox's
// confinement never depends on what the host read.
//
// Why not the others: fanotify needs CAP_SYS_ADMIN in the initial user
// namespace, which an unprivileged node does not have, and reports opens
// and reads of files, not stats, access checks or readlinks, which is how
// interpreters probe for modules. ptrace (even limited to chosen calls
// with SECCOMP_RET_TRACE) must attach to and follow every thread and child
// through clone and exec events, answer signal-delivery stops, and be
// driven from one locked OS thread in Go; it also changes what the app
// sees (it cannot be debugged, its own ptrace use breaks). The
// notification filter works unprivileged, follows every child through
// fork and exec by itself, stops only the calls it names, and costs
// nothing when Trace is not set: the filter is not installed.

// msgTrace is the init's message carrying the listener (see ctrl.go).
const msgTrace = 'T'

// traceState is the host's side of a sandbox's Spec.Trace.
type traceState struct {
	fn      func(string)
	started bool
	stop    chan struct{}
	wg      sync.WaitGroup
}

func (s *Sandbox) setTrace(fn func(string)) {
	s.mu.Lock()
	s.tr.fn = fn
	s.mu.Unlock()
}

// startTracer takes the listener the init sent and serves it until the
// sandbox is gone. On error the caller closes fds.
func (s *Sandbox) startTracer(fds []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.tr.fn == nil:
		return errors.New("trace listener sent, but tracing was not asked for")
	case s.tr.started:
		return errors.New("repeated trace listener")
	case len(fds) != 1:
		return fmt.Errorf("trace message carried %d fds, want 1", len(fds))
	}
	if l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fds[0])); err != nil || l != "anon_inode:seccomp notify" {
		return fmt.Errorf("trace fd is not a seccomp listener (%q)", l)
	}
	unix.CloseOnExec(fds[0])
	s.tr.started = true
	s.tr.stop = make(chan struct{})
	fd, fn, stop := fds[0], s.tr.fn, s.tr.stop
	s.tr.wg.Go(func() {
		defer unix.Close(fd)
		superviseTrace(fd, fn, stop)
	})
	return nil
}

// endTrace waits until the tracer has passed on every call, once the
// init is reaped.
func (s *Sandbox) endTrace() {
	s.mu.Lock()
	stop := s.tr.stop
	s.mu.Unlock()
	if stop != nil {
		close(stop)
	}
	s.tr.wg.Wait()
}

// superviseTrace answers notifications until no process is left that the
// filter applies to (the listener then reports POLLHUP), or stop is closed
// and nothing is pending.
func superviseTrace(fd int, fn func(string), stop <-chan struct{}) {
	stopping := false
	for {
		if !stopping {
			select {
			case <-stop:
				stopping = true
			default:
			}
		}
		timeout := 100 // ms: how often stop is looked at
		if stopping {
			timeout = 0
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		if n == 0 {
			if stopping {
				return
			}
			continue
		}
		if pfd[0].Revents&unix.POLLIN == 0 {
			return // POLLHUP: every traced process is gone
		}
		if p := answerNotif(fd); p != "" {
			fn(p)
		}
	}
}

// seccompNotif and seccompNotifResp are struct seccomp_notif and
// seccomp_notif_resp from linux/seccomp.h.
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// pathArg says where a traced call's path is: args[path], relative to the
// directory fd args[dirfd] (-1: the cwd).
type pathArg struct{ dirfd, path int }

// answerNotif receives one notification, lets the call continue, and
// returns the path it named, or "" when there is none to record (an
// fd-only call, or the caller went away).
func answerNotif(fd int) string {
	var n seccompNotif
	if err := ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_RECV, unsafe.Pointer(&n)); err != nil {
		return "" // ENOENT: the caller was interrupted before we got to it
	}
	p := notifPath(&n)
	// Checked after reading the process: its pid cannot have been reused
	// while the notification is live.
	if p != "" && ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_ID_VALID, unsafe.Pointer(&n.id)) != nil {
		p = ""
	}
	resp := seccompNotifResp{id: n.id, flags: unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE}
	ioctl(fd, unix.SECCOMP_IOCTL_NOTIF_SEND, unsafe.Pointer(&resp)) // ENOENT: interrupted meanwhile
	return p
}

func ioctl(fd int, req uint, arg unsafe.Pointer) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(req), uintptr(arg))
		switch e {
		case 0:
			return nil
		case unix.EINTR:
			continue
		default:
			return e
		}
	}
}

// notifPath reads and resolves the path a notified call names.
func notifPath(n *seccompNotif) string {
	a, ok := tracedCalls[uintptr(n.nr)]
	if !ok || n.arch != auditArch {
		return ""
	}
	pid := int(n.pid)
	p, err := readCString(pid, n.args[a.path])
	if err != nil || p == "" {
		return "" // "" with AT_EMPTY_PATH: the call is about the fd itself
	}
	if path.IsAbs(p) {
		return path.Clean(p)
	}
	link := "/proc/" + strconv.Itoa(pid) + "/cwd"
	if a.dirfd >= 0 && int32(n.args[a.dirfd]) != unix.AT_FDCWD {
		link = "/proc/" + strconv.Itoa(pid) + "/fd/" + strconv.Itoa(int(int32(n.args[a.dirfd])))
	}
	// The link is printed relative to the root of the sandbox's mount
	// namespace, which the host's root is not part of: the sandbox's path.
	base, err := os.Readlink(link)
	if err != nil || !path.IsAbs(base) {
		return ""
	}
	return path.Join(base, p)
}

// maxPath is PATH_MAX: no longer path reaches the kernel.
const maxPath = 4096

// readCString reads a NUL-terminated string at addr in pid's memory, a
// page at a time so that a string ending just before an unmapped page
// reads fine.
func readCString(pid int, addr uint64) (string, error) {
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/mem", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	var out []byte
	buf := make([]byte, 4096)
	for len(out) < maxPath {
		chunk := buf[:4096-addr%4096]
		n, err := unix.Pread(fd, chunk, int64(addr))
		if n <= 0 {
			if err == nil {
				err = errors.New("short read")
			}
			return "", err
		}
		for i, b := range chunk[:n] {
			if b == 0 {
				return string(append(out, chunk[:i]...)), nil
			}
		}
		out = append(out, chunk[:n]...)
		addr += uint64(n)
	}
	return "", errors.New("path longer than PATH_MAX")
}
