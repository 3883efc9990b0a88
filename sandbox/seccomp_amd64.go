package sandbox

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// auditArch is the only syscall ABI a sandboxed process may use; anything
// else (i386 via int 0x80) kills the process, because the syscall numbers
// in the tables below would mean something different there.
const auditArch = unix.AUDIT_ARCH_X86_64

// x32Bit marks x32 syscalls, which reuse x86_64's arch value.
const x32Bit = 0x40000000

// cloneNewFlags are the CLONE_NEW* bits that clone(2) accepts. With them
// blocked, clone can only make plain threads and processes.
const cloneNewFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// denied lists the syscalls that return EPERM inside a sandbox, grouped by
// why. Everything else is allowed.
var denied = []struct {
	why string
	nrs []uintptr
}{
	{"inspect or modify other processes", []uintptr{
		unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
		unix.SYS_PROCESS_MADVISE, unix.SYS_PROCESS_MRELEASE, unix.SYS_KCMP, unix.SYS_PIDFD_GETFD,
	}},
	{"change the mount tree", []uintptr{
		unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
		unix.SYS_OPEN_TREE, unix.SYS_OPEN_TREE_ATTR, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN,
		unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
	}},
	{"enter or create namespaces", []uintptr{unix.SYS_UNSHARE, unix.SYS_SETNS}},
	{"kernel keyrings are not namespaced", []uintptr{unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY}},
	{"large kernel attack surface", []uintptr{
		unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
		unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
		unix.SYS_FANOTIFY_INIT, unix.SYS_MODIFY_LDT, unix.SYS_LOOKUP_DCOOKIE,
	}},
	{"administer the machine", []uintptr{
		unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE,
		unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE, unix.SYS_REBOOT,
		unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT, unix.SYS_SYSLOG,
		unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_NFSSERVCTL, unix.SYS_VHANGUP,
		unix.SYS_USELIB, unix.SYS_USTAT, unix.SYS_SYSFS, unix.SYS__SYSCTL,
	}},
	{"open files by handle, bypassing the mount tree", []uintptr{unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT}},
	{"set clocks", []uintptr{unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_SETTIMEOFDAY, unix.SYS_ADJTIMEX}},
	{"the hostname is fixed", []uintptr{unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME}},
	{"raw hardware and ABI tweaks", []uintptr{unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_PERSONALITY}},
	{"device nodes", []uintptr{unix.SYS_MKNOD, unix.SYS_MKNODAT}},
	{"NUMA memory placement", []uintptr{
		unix.SYS_MBIND, unix.SYS_SET_MEMPOLICY, unix.SYS_SET_MEMPOLICY_HOME_NODE,
		unix.SYS_MIGRATE_PAGES, unix.SYS_MOVE_PAGES,
	}},
}

// filter returns the seccomp program installed in every sandbox.
//
//	arch != x86_64          -> kill process
//	nr >= x32Bit            -> EPERM
//	clone3                  -> ENOSYS (libc and Go fall back to clone, whose flags we can see)
//	clone with CLONE_NEW*   -> EPERM
//	nr in denied            -> EPERM
//	otherwise               -> allow
func filter() []unix.SockFilter {
	var nrs []uintptr
	for _, g := range denied {
		nrs = append(nrs, g.nrs...)
	}
	const (
		ld   = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	const (
		offNr   = 0
		offArch = 4
		offArg0 = 16 // low 32 bits on little-endian
	)
	// Layout: [head] [one jeq per denied nr] [allow] [clone check: ld, jset, allow] [enosys] [eperm]
	head := []unix.SockFilter{
		{Code: ld, K: offArch},
		{Code: jeq, Jt: 1, K: auditArch},
		{Code: ret, K: unix.SECCOMP_RET_KILL_PROCESS},
		{Code: ld, K: offNr},
	}
	// Indices relative to the end of head.
	n := len(nrs)
	checks := 3 // x32, clone3, clone
	allow := checks + n
	cloneCheck := allow + 1
	enosys := cloneCheck + 3
	eperm := enosys + 1
	prog := head
	jump := func(from, to int) uint8 {
		d := to - from - 1
		if d < 0 || d > 255 {
			panic("seccomp: jump out of range")
		}
		return uint8(d)
	}
	prog = append(prog,
		unix.SockFilter{Code: jge, Jt: jump(0, eperm), K: x32Bit},
		unix.SockFilter{Code: jeq, Jt: jump(1, enosys), K: unix.SYS_CLONE3},
		unix.SockFilter{Code: jeq, Jt: jump(2, cloneCheck), K: unix.SYS_CLONE},
	)
	for i, nr := range nrs {
		prog = append(prog, unix.SockFilter{Code: jeq, Jt: jump(checks+i, eperm), K: uint32(nr)})
	}
	prog = append(prog,
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: ld, K: offArg0},
		unix.SockFilter{Code: jset, Jt: jump(cloneCheck+1, eperm), K: cloneNewFlags},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ALLOW},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		unix.SockFilter{Code: ret, K: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	)
	return prog
}

// SeccompProgram returns the sandbox's seccomp filter as raw struct
// sock_filter bytes, the form bwrap's --seccomp option reads. It lets a
// benchmark give another sandbox the same filter.
func SeccompProgram() []byte {
	prog := filter()
	size := len(prog) * int(unsafe.Sizeof(prog[0]))
	return append([]byte(nil), unsafe.Slice((*byte)(unsafe.Pointer(&prog[0])), size)...)
}
