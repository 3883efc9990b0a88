package sandbox

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tracedCalls are the calls that name a file, and where the name is.
var tracedCalls = map[uintptr]pathArg{
	unix.SYS_OPEN:       {-1, 0},
	unix.SYS_OPENAT:     {0, 1},
	unix.SYS_OPENAT2:    {0, 1},
	unix.SYS_EXECVE:     {-1, 0},
	unix.SYS_EXECVEAT:   {0, 1},
	unix.SYS_STAT:       {-1, 0},
	unix.SYS_LSTAT:      {-1, 0},
	unix.SYS_NEWFSTATAT: {0, 1},
	unix.SYS_STATX:      {0, 1},
	unix.SYS_ACCESS:     {-1, 0},
	unix.SYS_FACCESSAT:  {0, 1},
	unix.SYS_FACCESSAT2: {0, 1},
	unix.SYS_READLINK:   {-1, 0},
	unix.SYS_READLINKAT: {0, 1},
}

// traceFilter notifies the listener of every traced call made with the
// native ABI and allows everything else; the allow-list filter, installed
// on top of it, still refuses what it refuses (its ERRNO and KILL verdicts
// take precedence over USER_NOTIF).
//
//	arch != x86_64      -> allow (the allow-list filter kills it)
//	nr in tracedCalls   -> user notif
//	otherwise           -> allow
func traceFilter() []unix.SockFilter {
	const (
		ld  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		ret = unix.BPF_RET | unix.BPF_K
	)
	n := len(tracedCalls)
	allow := 3 + n
	notify := allow + 1
	prog := []unix.SockFilter{
		{Code: ld, K: 4},
		{Code: jeq, Jt: 0, Jf: uint8(allow - 2), K: auditArch},
		{Code: ld, K: 0},
	}
	for nr := range tracedCalls {
		i := len(prog)
		prog = append(prog, unix.SockFilter{Code: jeq, Jt: uint8(notify - i - 1), K: uint32(nr)})
	}
	return append(prog,
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_USER_NOTIF},
	)
}

// startTrace installs traceFilter on the init's locked thread (which
// forks the app) and sends its listener to the host. It runs before
// lockDown, while the init still has CAP_SYS_ADMIN in its user namespace
// (so no_new_privs is not needed yet); lockDown's TSYNC then gives the
// init's other threads this filter too. From here on every traced call,
// the init's own included, waits for the host's answer.
func startTrace() error {
	prog := traceFilter()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	fd, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_NEW_LISTENER, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("install the tracing seccomp filter (needs Linux 5.5 or later): %w", e)
	}
	initSend([]byte{msgTrace}, unix.UnixRights(int(fd)))
	unix.Close(int(fd))
	return nil
}
