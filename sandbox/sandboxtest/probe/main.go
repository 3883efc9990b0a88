// Command probe runs inside a sandbox and tries, on request, to escape it.
// Each attempt is an HTTP endpoint answering JSON; the sandboxtest battery
// decides what the answers must be. It listens on 127.0.0.1:$PORT, or on
// the unix socket $LISTEN_UNIX when that is set. GET / answers "ok".
// With PROBE_IGNORE_TERM=1 it ignores SIGTERM.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "status": // run through the setuid copy
			b, _ := os.ReadFile("/proc/self/status")
			os.Stdout.Write(b)
			return
		case "int80":
			int80(20) // i386 getpid: the filter must kill us
			os.Exit(0)
		}
	}
	if os.Getenv("PROBE_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	var ln net.Listener
	var err error
	if p := os.Getenv("LISTEN_UNIX"); p != "" {
		ln, err = net.Listen("unix", p)
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "probe:", err)
		os.Exit(1)
	}
	b := make([]byte, 8)
	rand.Read(b)
	boot := hex.EncodeToString(b)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	handle := func(path string, f func(q query) any) {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(f(query{r}))
		})
	}
	handle("/id", func(q query) any {
		h, _ := os.Hostname()
		return map[string]any{"boot": boot, "pid": os.Getpid(), "uid": os.Getuid(), "hostname": h}
	})
	handle("/write", func(q query) any {
		f, err := os.OpenFile(q.s("path"), os.O_WRONLY|os.O_CREATE, 0o644)
		if err == nil {
			_, err = f.Write([]byte("x"))
			f.Close()
		}
		return result(err)
	})
	// /fill writes mb MiB to path, synced, and says how much it could.
	handle("/fill", func(q query) any {
		f, err := os.OpenFile(q.s("path"), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		var n int64
		if err == nil {
			buf := make([]byte, 1<<20)
			mb, _ := strconv.Atoi(q.s("mb"))
			for range mb {
				var k int
				k, err = f.Write(buf)
				n += int64(k)
				if err != nil {
					break
				}
			}
			if err == nil {
				err = f.Sync()
			}
			f.Close()
		}
		r := result(err)
		r["written"] = n
		return r
	})
	handle("/read", func(q query) any {
		b, err := os.ReadFile(q.s("path"))
		r := result(err)
		r["data"] = string(b[:min(len(b), 64<<10)])
		return r
	})
	handle("/ls", func(q query) any {
		ents, err := os.ReadDir(q.s("path"))
		r := result(err)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		r["names"] = names
		return r
	})
	handle("/connect", func(q query) any {
		c, err := net.DialTimeout(q.s("net"), q.s("addr"), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return result(err)
	})
	handle("/ifaces", func(q query) any {
		ifs, err := net.Interfaces()
		r := result(err)
		var names []string
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		r["names"] = names
		return r
	})
	handle("/status", func(q query) any { return statusOf(os.ReadFile("/proc/self/status")) })
	handle("/sys", func(q query) any {
		f, ok := attempts[q.s("name")]
		if !ok {
			return map[string]any{"ok": false, "errno": -1, "err": "unknown attempt"}
		}
		return result(f())
	})
	handle("/suid", func(q query) any {
		const p = "/bin/suid"
		fi, err := os.Stat(p)
		if err != nil {
			return result(err)
		}
		out, err := exec.Command(p, "status").Output()
		r := statusOf(out, err)
		r["setuid_bit"] = fi.Mode()&os.ModeSetuid != 0
		r["owner"] = fi.Sys().(*syscall.Stat_t).Uid
		return r
	})
	handle("/forkbomb", func(q query) any {
		var pids []int
		var errno syscall.Errno
		deadline := time.Now().Add(10 * time.Second)
		for len(pids) < q.i("max") && time.Now().Before(deadline) {
			pid, e := forkPause()
			if e != 0 {
				errno = e
				break
			}
			pids = append(pids, pid)
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL)
		}
		for _, p := range pids {
			var ws syscall.WaitStatus
			syscall.Wait4(p, &ws, 0, nil)
		}
		r := result(errno)
		if errno == 0 {
			r = result(nil)
		}
		r["forked"] = len(pids)
		return r
	})
	var hog [][]byte
	handle("/memhog", func(q query) any {
		for range q.i("mb") {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			hog = append(hog, b)
		}
		n := len(hog)
		if q.s("keep") == "" { // keep=1 holds it, for a test of what the node sees
			hog = nil
		}
		return map[string]any{"ok": true, "survived_mb": n}
	})
	handle("/nofile", func(q query) any {
		var lim syscall.Rlimit
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
		raise := syscall.Rlimit{Cur: lim.Max + 1, Max: lim.Max + 1}
		raiseErr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raise)
		var fds []int
		var err error
		for len(fds) < 1<<20 {
			fd, e := syscall.Open("/dev/null", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
			if e != nil {
				err = e
				break
			}
			fds = append(fds, fd)
		}
		for _, fd := range fds {
			syscall.Close(fd)
		}
		r := result(err)
		r["opened"] = len(fds)
		r["max"] = lim.Max
		r["raise_errno"] = errnoOf(raiseErr)
		return r
	})
	handle("/i386", func(q query) any {
		err := exec.Command("/proc/self/exe", "int80").Run()
		r := result(err)
		if ee, ok := err.(*exec.ExitError); ok {
			ws := ee.Sys().(syscall.WaitStatus)
			r["signal"] = int(ws.Signal())
			r["exit"] = ws.ExitStatus()
		}
		return r
	})
	handle("/refused", func(q query) any { return refused() })
	handle("/spin", func(q query) any { // busy on q.i("threads") threads for q.i("ms")
		end := time.Now().Add(time.Duration(q.i("ms")) * time.Millisecond)
		done := make(chan int)
		for range max(1, q.i("threads")) {
			go func() {
				n := 0
				for time.Now().Before(end) {
					n++
				}
				done <- n
			}()
		}
		total := 0
		for range max(1, q.i("threads")) {
			total += <-done
		}
		return map[string]any{"ok": true, "loops": total}
	})
	handle("/kill1", func(q query) any { return result(syscall.Kill(1, syscall.SIGKILL)) })
	handle("/symlink", func(q query) any {
		const link = "/var/probe-link"
		os.Remove(link)
		if err := os.Symlink(q.s("target"), link); err != nil {
			return result(err)
		}
		b, err := os.ReadFile(link)
		r := result(err)
		r["data"] = string(b)
		return r
	})
	handle("/hardlink", func(q query) any {
		self, _ := os.Readlink("/proc/self/exe")
		os.Remove("/var/probe-hardlink")
		return result(os.Link(self, "/var/probe-hardlink"))
	})
	http.Serve(ln, mux)
}

type query struct{ r *http.Request }

func (q query) s(k string) string { return q.r.URL.Query().Get(k) }
func (q query) i(k string) int {
	n, _ := strconv.Atoi(q.s(k))
	return n
}

func errnoOf(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := errors.AsType[syscall.Errno](err); ok {
		return int(e)
	}
	return -1
}

func result(err error) map[string]any {
	if err == nil {
		return map[string]any{"ok": true, "errno": 0}
	}
	return map[string]any{"ok": false, "errno": errnoOf(err), "err": err.Error()}
}

// statusOf returns a /proc/<pid>/status as fields.
func statusOf(b []byte, err error) map[string]any {
	r := result(err)
	fields := map[string]string{}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			fields[k] = strings.TrimSpace(v)
		}
	}
	r["status"] = fields
	return r
}

// attempts are single syscalls the sandbox must refuse (except the
// controls "fork" and "exec", which must work). Arguments are harmless or
// zeroed: the filter decides before the kernel looks at them.
var attempts = map[string]func() error{
	"ptrace": func() error { return unix.PtraceAttach(1) },
	"process_vm_readv": func() error {
		var b [8]byte
		local := []unix.Iovec{{Base: &b[0], Len: 8}}
		remote := []unix.RemoteIovec{{Base: 0x400000, Len: 8}}
		_, err := unix.ProcessVMReadv(1, local, remote, 0)
		return err
	},
	"mount":         func() error { return unix.Mount("tmpfs", "/tmp", "tmpfs", 0, "") },
	"umount":        func() error { return unix.Unmount("/var", unix.MNT_DETACH) },
	"chroot":        func() error { return unix.Chroot("/tmp") },
	"pivot_root":    func() error { return unix.PivotRoot("/tmp", "/tmp") },
	"open_tree":     func() error { return raw(unix.SYS_OPEN_TREE, signed(unix.AT_FDCWD), ptr("/")) },
	"fsopen":        func() error { return raw(unix.SYS_FSOPEN, ptr("tmpfs"), 0) },
	"unshare_user":  func() error { return unix.Unshare(unix.CLONE_NEWUSER) },
	"unshare_mount": func() error { return unix.Unshare(unix.CLONE_NEWNS) },
	"unshare_net":   func() error { return unix.Unshare(unix.CLONE_NEWNET) },
	"setns": func() error {
		fd, err := unix.Open("/proc/1/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			// Not even openable: use a bogus fd; the filter must still say EPERM.
			fd = 0
		} else {
			defer unix.Close(fd)
		}
		return unix.Setns(fd, 0)
	},
	"clone_newuser": func() error {
		cmd := exec.Command("/proc/self/exe", "status")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}
		return cmd.Run()
	},
	"clone3": func() error { return raw(unix.SYS_CLONE3, 0, 0) },
	"fork":   func() error { return exec.Command("/proc/self/exe", "status").Run() },
	"x32":    func() error { return raw(0x40000000+unix.SYS_GETPID, 0, 0) },
	"keyctl": func() error {
		return raw(unix.SYS_KEYCTL, unix.KEYCTL_JOIN_SESSION_KEYRING, ptr("probe"))
	},
	"add_key": func() error {
		return raw(unix.SYS_ADD_KEY, ptr("user"), ptr("probe"), ptr("x"), 1, signed(unix.KEY_SPEC_PROCESS_KEYRING))
	},
	"request_key": func() error {
		return raw(unix.SYS_REQUEST_KEY, ptr("user"), ptr("probe"), 0, signed(unix.KEY_SPEC_PROCESS_KEYRING))
	},
	"bpf": func() error {
		var attr [128]byte
		return raw(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	},
	"perf_event_open": func() error {
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, 0, -1, -1, unix.PERF_FLAG_FD_CLOEXEC)
		if err == nil {
			unix.Close(fd)
		}
		return err
	},
	"userfaultfd":    func() error { return raw(unix.SYS_USERFAULTFD, unix.O_CLOEXEC) },
	"io_uring_setup": func() error { var p [120]byte; return raw(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&p[0]))) },
	"open_by_handle_at": func() error {
		var h [128 + 8]byte
		return raw(unix.SYS_OPEN_BY_HANDLE_AT, signed(unix.AT_FDCWD), uintptr(unsafe.Pointer(&h[0])), unix.O_RDONLY)
	},
	"name_to_handle_at": func() error {
		var h [128 + 8]byte
		var mnt int32
		h[0] = 128
		return raw(unix.SYS_NAME_TO_HANDLE_AT, signed(unix.AT_FDCWD), ptr("/"), uintptr(unsafe.Pointer(&h[0])), uintptr(unsafe.Pointer(&mnt)), 0)
	},
	"personality": func() error { return raw(unix.SYS_PERSONALITY, 0x0008) }, // PER_LINUX32
	"mknod":       func() error { return unix.Mknod("/tmp/probe-null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))) },
	"kexec_load":  func() error { return raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0) },
	"init_module": func() error { return raw(unix.SYS_INIT_MODULE, 0, 0, ptr("")) },
	"reboot": func() error {
		return raw(unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2, unix.LINUX_REBOOT_CMD_CAD_OFF)
	},
	"swapon":       func() error { return raw(unix.SYS_SWAPON, ptr("/tmp/swap"), 0) },
	"syslog":       func() error { var b [64]byte; return raw(unix.SYS_SYSLOG, 3, uintptr(unsafe.Pointer(&b[0])), 64) },
	"acct":         func() error { return raw(unix.SYS_ACCT, 0) },
	"sethostname":  func() error { return unix.Sethostname([]byte("escaped")) },
	"settimeofday": func() error { tv := unix.NsecToTimeval(time.Now().UnixNano()); return unix.Settimeofday(&tv) },
	"clock_settime": func() error {
		ts := unix.NsecToTimespec(time.Now().UnixNano())
		return raw(unix.SYS_CLOCK_SETTIME, 0, uintptr(unsafe.Pointer(&ts)))
	},
	"iopl":          func() error { return raw(unix.SYS_IOPL, 3) },
	"ioperm":        func() error { return raw(unix.SYS_IOPERM, 0x80, 1, 1) },
	"kcmp":          func() error { return raw(unix.SYS_KCMP, 1, uintptr(os.Getpid()), 0, 0, 0) },
	"pidfd_getfd":   func() error { return raw(unix.SYS_PIDFD_GETFD, 0, 0, 0) },
	"fanotify_init": func() error { return raw(unix.SYS_FANOTIFY_INIT, 0, 0) },
	"modify_ldt":    func() error { var b [16]byte; return raw(unix.SYS_MODIFY_LDT, 0, uintptr(unsafe.Pointer(&b[0])), 16) },
	"set_mempolicy": func() error { return raw(unix.SYS_SET_MEMPOLICY, 0, 0, 0) },
	"setgroups":     func() error { return unix.Setgroups([]int{0}) },
}

func ptr(s string) uintptr {
	b := append([]byte(s), 0)
	return uintptr(unsafe.Pointer(&b[0]))
}

func raw(trap uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	r, _, e := unix.Syscall6(trap, a[0], a[1], a[2], a[3], a[4], a[5])
	if e != 0 {
		return e
	}
	if trap == unix.SYS_USERFAULTFD || trap == unix.SYS_IO_URING_SETUP || trap == unix.SYS_FANOTIFY_INIT ||
		trap == unix.SYS_OPEN_BY_HANDLE_AT || trap == unix.SYS_OPEN_TREE || trap == unix.SYS_FSOPEN || trap == unix.SYS_BPF {
		unix.Close(int(r))
	}
	return nil
}

// signed passes a negative constant (AT_FDCWD, KEY_SPEC_*) as an argument.
func signed(i int) uintptr { return uintptr(i) }
