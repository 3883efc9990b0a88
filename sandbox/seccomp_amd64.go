package sandbox

import (
	"sync"

	"golang.org/x/sys/unix"
)

// auditArch is the only syscall ABI a sandboxed process may use; anything
// else (i386 via int 0x80) kills the process, because the syscall numbers
// in the table below would mean something different there.
const auditArch = unix.AUDIT_ARCH_X86_64

// x32Bit marks x32 syscalls, which reuse x86_64's arch value.
const x32Bit = 0x40000000

// maxSyscall is the highest x86_64 syscall number the table knows.
const maxSyscall = unix.SYS_RSEQ_SLICE_YIELD

// cloneNewFlags are the CLONE_NEW* bits that clone(2) accepts. With them
// refused, clone can only make plain threads and processes.
const cloneNewFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS |
	unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET

// socketFamilies are the address families a grain may open sockets in:
// local sockets, and IP, which its network namespace confines to
// loopback. AF_NETLINK is allowed only for NETLINK_ROUTE (reading its own
// interfaces and addresses, which Go's net.Interfaces and glibc's
// getaddrinfo do). The rest reach past the network namespace (AF_VSOCK
// talks to the hypervisor), carry the kernel's audit or device events
// (netlink audit, uevent), or are rarely used kernel code no app needs.
var socketFamilies = []uint32{unix.AF_UNIX, unix.AF_INET, unix.AF_INET6, unix.AF_NETLINK}

// refusedIoctls can inject input into or redirect a terminal the grain
// shares with something outside (TIOCSTI, TIOCLINUX: the classic
// sandbox escapes through a controlling tty), or load kernel code
// (TIOCSETD picks a line discipline, which may autoload a module).
var refusedIoctls = []uint32{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCCONS, unix.TIOCSETD}

var socketCheck = oneOf(0, socketFamilies, map[uint32]*argCheck{
	unix.AF_NETLINK: oneOf(2, []uint32{unix.NETLINK_ROUTE}, nil, retErrno(unix.EAFNOSUPPORT)),
}, retErrno(unix.EAFNOSUPPORT))

// sandboxPolicy is the table, built once.
var sandboxPolicy = sync.OnceValue(func() *policy {
	p := &policy{arch: auditArch, maxNr: maxSyscall, groups: amd64Groups()}
	p.lookup(0) // builds the index now, so later readers share it read-only
	return p
})

// amd64Groups is the table. The allowed groups follow what Docker's
// default profile allows an unprivileged container (which is what real
// Go, glibc, Python, Node.js and PHP programs were found to need) minus
// what a grain, which is never meant to administer anything, can do
// without; the refused groups follow Docker's and Sandstorm's
// supervisor's reasons.
func amd64Groups() []group {
	eperm := retErrno(unix.EPERM)
	enosys := retErrno(unix.ENOSYS)
	return []group{
		// Allowed.
		{why: "files: open, read, write, stat and walk the sandbox's own tree (its mounts decide what is writable)", ret: retAllow, nrs: []uintptr{
			unix.SYS_READ, unix.SYS_WRITE, unix.SYS_OPEN, unix.SYS_CLOSE, unix.SYS_STAT, unix.SYS_FSTAT,
			unix.SYS_LSTAT, unix.SYS_LSEEK, unix.SYS_PREAD64, unix.SYS_PWRITE64, unix.SYS_READV, unix.SYS_WRITEV,
			unix.SYS_ACCESS, unix.SYS_PIPE, unix.SYS_DUP, unix.SYS_DUP2, unix.SYS_DUP3, unix.SYS_FCNTL,
			unix.SYS_FLOCK, unix.SYS_FSYNC, unix.SYS_FDATASYNC, unix.SYS_TRUNCATE, unix.SYS_FTRUNCATE,
			unix.SYS_GETDENTS, unix.SYS_GETDENTS64, unix.SYS_GETCWD, unix.SYS_CHDIR, unix.SYS_FCHDIR,
			unix.SYS_RENAME, unix.SYS_MKDIR, unix.SYS_RMDIR, unix.SYS_CREAT, unix.SYS_LINK, unix.SYS_UNLINK,
			unix.SYS_SYMLINK, unix.SYS_READLINK, unix.SYS_CHMOD, unix.SYS_FCHMOD, unix.SYS_CHOWN,
			unix.SYS_FCHOWN, unix.SYS_LCHOWN, unix.SYS_UMASK, unix.SYS_STATFS, unix.SYS_FSTATFS,
			unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_FUTIMESAT, unix.SYS_UTIMENSAT, unix.SYS_OPENAT,
			unix.SYS_MKDIRAT, unix.SYS_FCHOWNAT, unix.SYS_NEWFSTATAT, unix.SYS_UNLINKAT, unix.SYS_RENAMEAT,
			unix.SYS_RENAMEAT2, unix.SYS_LINKAT, unix.SYS_SYMLINKAT, unix.SYS_READLINKAT, unix.SYS_FCHMODAT,
			unix.SYS_FCHMODAT2, unix.SYS_FACCESSAT, unix.SYS_FACCESSAT2, unix.SYS_OPENAT2, unix.SYS_STATX,
			unix.SYS_PREADV, unix.SYS_PWRITEV, unix.SYS_PREADV2, unix.SYS_PWRITEV2, unix.SYS_SENDFILE,
			unix.SYS_SPLICE, unix.SYS_TEE, unix.SYS_VMSPLICE, unix.SYS_COPY_FILE_RANGE, unix.SYS_SYNC,
			unix.SYS_SYNCFS, unix.SYS_SYNC_FILE_RANGE, unix.SYS_FALLOCATE, unix.SYS_FADVISE64,
			unix.SYS_READAHEAD, unix.SYS_CLOSE_RANGE, unix.SYS_PIPE2, unix.SYS_CACHESTAT,
			unix.SYS_FILE_GETATTR, unix.SYS_FILE_SETATTR,
		}},
		{why: "extended attributes of the sandbox's own files (the kernel refuses trusted.* and security.* without capabilities)", ret: retAllow, nrs: []uintptr{
			unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR, unix.SYS_GETXATTR, unix.SYS_LGETXATTR,
			unix.SYS_FGETXATTR, unix.SYS_LISTXATTR, unix.SYS_LLISTXATTR, unix.SYS_FLISTXATTR,
			unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR, unix.SYS_SETXATTRAT,
			unix.SYS_GETXATTRAT, unix.SYS_LISTXATTRAT, unix.SYS_REMOVEXATTRAT,
		}},
		{why: "memory: every runtime's allocator and loader (bounded by the memory cgroup and RLIMIT_MEMLOCK)", ret: retAllow, nrs: []uintptr{
			unix.SYS_MMAP, unix.SYS_MPROTECT, unix.SYS_MUNMAP, unix.SYS_BRK, unix.SYS_MREMAP, unix.SYS_MSYNC,
			unix.SYS_MINCORE, unix.SYS_MADVISE, unix.SYS_MLOCK, unix.SYS_MUNLOCK, unix.SYS_MLOCKALL,
			unix.SYS_MUNLOCKALL, unix.SYS_MLOCK2, unix.SYS_REMAP_FILE_PAGES, unix.SYS_MEMBARRIER,
			unix.SYS_MEMFD_CREATE, unix.SYS_MEMFD_SECRET, unix.SYS_PKEY_MPROTECT, unix.SYS_PKEY_ALLOC,
			unix.SYS_PKEY_FREE, unix.SYS_MSEAL, unix.SYS_MAP_SHADOW_STACK, unix.SYS_GET_MEMPOLICY,
		}},
		{why: "signals, within the sandbox's own pid namespace", ret: retAllow, nrs: []uintptr{
			unix.SYS_RT_SIGACTION, unix.SYS_RT_SIGPROCMASK, unix.SYS_RT_SIGRETURN, unix.SYS_RT_SIGPENDING,
			unix.SYS_RT_SIGTIMEDWAIT, unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_SIGSUSPEND, unix.SYS_SIGALTSTACK,
			unix.SYS_KILL, unix.SYS_TKILL, unix.SYS_TGKILL, unix.SYS_RT_TGSIGQUEUEINFO, unix.SYS_SIGNALFD,
			unix.SYS_SIGNALFD4, unix.SYS_PAUSE, unix.SYS_RESTART_SYSCALL, unix.SYS_PIDFD_OPEN,
			unix.SYS_PIDFD_SEND_SIGNAL,
		}},
		{why: "processes and threads (clone is checked apart, for namespace flags), bounded by the pids cgroup", ret: retAllow, nrs: []uintptr{
			unix.SYS_FORK, unix.SYS_VFORK, unix.SYS_EXECVE, unix.SYS_EXECVEAT, unix.SYS_EXIT, unix.SYS_EXIT_GROUP,
			unix.SYS_WAIT4, unix.SYS_WAITID, unix.SYS_SET_TID_ADDRESS, unix.SYS_SET_ROBUST_LIST,
			unix.SYS_GET_ROBUST_LIST, unix.SYS_FUTEX, unix.SYS_FUTEX_WAITV, unix.SYS_FUTEX_WAKE,
			unix.SYS_FUTEX_WAIT, unix.SYS_FUTEX_REQUEUE, unix.SYS_ARCH_PRCTL, unix.SYS_SET_THREAD_AREA,
			unix.SYS_GET_THREAD_AREA, unix.SYS_RSEQ, unix.SYS_RSEQ_SLICE_YIELD, unix.SYS_PRCTL, unix.SYS_GETTID,
			unix.SYS_GETPID, unix.SYS_GETPPID, unix.SYS_GETPGID, unix.SYS_SETPGID, unix.SYS_GETPGRP,
			unix.SYS_GETSID, unix.SYS_SETSID, unix.SYS_UNAME, unix.SYS_SYSINFO, unix.SYS_GETRUSAGE,
			unix.SYS_TIMES, unix.SYS_GETRLIMIT, unix.SYS_SETRLIMIT, unix.SYS_PRLIMIT64, unix.SYS_GETPRIORITY,
			unix.SYS_SETPRIORITY,
		}},
		{why: "identity: reading it, and changes the kernel refuses anyway without the capabilities the sandbox dropped (servers call them at start)", ret: retAllow, nrs: []uintptr{
			unix.SYS_GETUID, unix.SYS_GETEUID, unix.SYS_GETGID, unix.SYS_GETEGID, unix.SYS_GETRESUID,
			unix.SYS_GETRESGID, unix.SYS_GETGROUPS, unix.SYS_SETUID, unix.SYS_SETGID, unix.SYS_SETREUID,
			unix.SYS_SETREGID, unix.SYS_SETRESUID, unix.SYS_SETRESGID, unix.SYS_SETFSUID, unix.SYS_SETFSGID,
			unix.SYS_SETGROUPS, unix.SYS_CAPGET, unix.SYS_CAPSET,
		}},
		{why: "scheduling: the kernel refuses real-time classes without capabilities, and the cpu cgroup bounds the rest", ret: retAllow, nrs: []uintptr{
			unix.SYS_SCHED_YIELD, unix.SYS_SCHED_SETPARAM, unix.SYS_SCHED_GETPARAM, unix.SYS_SCHED_SETSCHEDULER,
			unix.SYS_SCHED_GETSCHEDULER, unix.SYS_SCHED_GET_PRIORITY_MAX, unix.SYS_SCHED_GET_PRIORITY_MIN,
			unix.SYS_SCHED_RR_GET_INTERVAL, unix.SYS_SCHED_SETAFFINITY, unix.SYS_SCHED_GETAFFINITY,
			unix.SYS_SCHED_SETATTR, unix.SYS_SCHED_GETATTR, unix.SYS_GETCPU, unix.SYS_IOPRIO_SET,
			unix.SYS_IOPRIO_GET,
		}},
		{why: "time: reading clocks, sleeping, timers", ret: retAllow, nrs: []uintptr{
			unix.SYS_NANOSLEEP, unix.SYS_CLOCK_NANOSLEEP, unix.SYS_CLOCK_GETTIME, unix.SYS_CLOCK_GETRES,
			unix.SYS_GETTIMEOFDAY, unix.SYS_TIME, unix.SYS_ALARM, unix.SYS_GETITIMER, unix.SYS_SETITIMER,
			unix.SYS_TIMER_CREATE, unix.SYS_TIMER_SETTIME, unix.SYS_TIMER_GETTIME, unix.SYS_TIMER_GETOVERRUN,
			unix.SYS_TIMER_DELETE, unix.SYS_TIMERFD_CREATE, unix.SYS_TIMERFD_SETTIME, unix.SYS_TIMERFD_GETTIME,
		}},
		{why: "waiting for events: Go's netpoller, libuv (Node.js), asyncio, PHP's event loops", ret: retAllow, nrs: []uintptr{
			unix.SYS_POLL, unix.SYS_PPOLL, unix.SYS_SELECT, unix.SYS_PSELECT6, unix.SYS_EPOLL_CREATE,
			unix.SYS_EPOLL_CREATE1, unix.SYS_EPOLL_CTL, unix.SYS_EPOLL_WAIT, unix.SYS_EPOLL_PWAIT,
			unix.SYS_EPOLL_PWAIT2, unix.SYS_EVENTFD, unix.SYS_EVENTFD2, unix.SYS_INOTIFY_INIT,
			unix.SYS_INOTIFY_INIT1, unix.SYS_INOTIFY_ADD_WATCH, unix.SYS_INOTIFY_RM_WATCH,
		}},
		{why: "using sockets (socket and socketpair are checked apart, for the family); the network namespace holds only loopback", ret: retAllow, nrs: []uintptr{
			unix.SYS_CONNECT, unix.SYS_ACCEPT, unix.SYS_ACCEPT4, unix.SYS_SENDTO, unix.SYS_RECVFROM,
			unix.SYS_SENDMSG, unix.SYS_RECVMSG, unix.SYS_SENDMMSG, unix.SYS_RECVMMSG, unix.SYS_SHUTDOWN,
			unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_GETSOCKNAME, unix.SYS_GETPEERNAME, unix.SYS_SETSOCKOPT,
			unix.SYS_GETSOCKOPT,
		}},
		{why: "System V IPC and POSIX message queues (PHP, PostgreSQL): the sandbox's IPC namespace is its own", ret: retAllow, nrs: []uintptr{
			unix.SYS_SHMGET, unix.SYS_SHMAT, unix.SYS_SHMCTL, unix.SYS_SHMDT, unix.SYS_SEMGET, unix.SYS_SEMOP,
			unix.SYS_SEMCTL, unix.SYS_SEMTIMEDOP, unix.SYS_MSGGET, unix.SYS_MSGSND, unix.SYS_MSGRCV,
			unix.SYS_MSGCTL, unix.SYS_MQ_OPEN, unix.SYS_MQ_UNLINK, unix.SYS_MQ_TIMEDSEND,
			unix.SYS_MQ_TIMEDRECEIVE, unix.SYS_MQ_NOTIFY, unix.SYS_MQ_GETSETATTR,
		}},
		{why: "Linux AIO: databases' and glibc's asynchronous file I/O", ret: retAllow, nrs: []uintptr{
			unix.SYS_IO_SETUP, unix.SYS_IO_DESTROY, unix.SYS_IO_GETEVENTS, unix.SYS_IO_SUBMIT,
			unix.SYS_IO_CANCEL, unix.SYS_IO_PGETEVENTS,
		}},
		{why: "self-confinement: an app may narrow what it can do, never widen it", ret: retAllow, nrs: []uintptr{
			unix.SYS_SECCOMP, unix.SYS_LANDLOCK_CREATE_RULESET, unix.SYS_LANDLOCK_ADD_RULE,
			unix.SYS_LANDLOCK_RESTRICT_SELF,
		}},
		{why: "random numbers", ret: retAllow, nrs: []uintptr{unix.SYS_GETRANDOM}},
		{why: "uprobe trampolines: entered by the kernel's own code in a traced process, which refusing would crash", ret: retAllow, nrs: []uintptr{
			unix.SYS_URETPROBE, unix.SYS_UPROBE,
		}},

		// Allowed with some arguments.
		{why: "socket families: see socketFamilies", check: socketCheck, nrs: []uintptr{unix.SYS_SOCKET, unix.SYS_SOCKETPAIR}},
		{why: "clone without CLONE_NEW* flags: threads and processes, not namespaces", check: noBits(0, cloneNewFlags, eperm), nrs: []uintptr{unix.SYS_CLONE}},
		{why: "ioctl, but not the terminal injection and line discipline requests in refusedIoctls", check: noneOf(1, refusedIoctls, eperm), nrs: []uintptr{unix.SYS_IOCTL}},

		// Refused.
		{why: "clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc and Go fall back to clone", ret: enosys, nrs: []uintptr{unix.SYS_CLONE3}},
		{why: "inspect or modify other processes", ret: eperm, nrs: []uintptr{
			unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
			unix.SYS_PROCESS_MADVISE, unix.SYS_PROCESS_MRELEASE, unix.SYS_KCMP, unix.SYS_PIDFD_GETFD,
		}},
		{why: "change or list the mount tree", ret: eperm, nrs: []uintptr{
			unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
			unix.SYS_OPEN_TREE, unix.SYS_OPEN_TREE_ATTR, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN,
			unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
			unix.SYS_STATMOUNT, unix.SYS_LISTMOUNT,
		}},
		{why: "enter, create or list namespaces", ret: eperm, nrs: []uintptr{unix.SYS_UNSHARE, unix.SYS_SETNS, unix.SYS_LISTNS}},
		{why: "kernel keyrings are not namespaced", ret: eperm, nrs: []uintptr{unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY}},
		{why: "large kernel attack surface no app needs", ret: eperm, nrs: []uintptr{
			unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
			unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
			unix.SYS_FANOTIFY_INIT, unix.SYS_FANOTIFY_MARK, unix.SYS_MODIFY_LDT, unix.SYS_LOOKUP_DCOOKIE,
		}},
		{why: "administer the machine", ret: eperm, nrs: []uintptr{
			unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE,
			unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE, unix.SYS_REBOOT,
			unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_ACCT, unix.SYS_SYSLOG,
			unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_NFSSERVCTL, unix.SYS_VHANGUP,
			unix.SYS_USELIB, unix.SYS_USTAT, unix.SYS_SYSFS, unix.SYS__SYSCTL,
		}},
		{why: "security module attributes", ret: eperm, nrs: []uintptr{
			unix.SYS_LSM_GET_SELF_ATTR, unix.SYS_LSM_SET_SELF_ATTR, unix.SYS_LSM_LIST_MODULES,
		}},
		{why: "open files by handle, bypassing the mount tree", ret: eperm, nrs: []uintptr{unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_NAME_TO_HANDLE_AT}},
		{why: "set clocks", ret: eperm, nrs: []uintptr{unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_SETTIMEOFDAY, unix.SYS_ADJTIMEX}},
		{why: "the hostname is fixed", ret: eperm, nrs: []uintptr{unix.SYS_SETHOSTNAME, unix.SYS_SETDOMAINNAME}},
		{why: "raw hardware and ABI tweaks", ret: eperm, nrs: []uintptr{unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_PERSONALITY}},
		{why: "device nodes", ret: eperm, nrs: []uintptr{unix.SYS_MKNOD, unix.SYS_MKNODAT}},
		{why: "NUMA memory placement, which would move other grains' pages", ret: eperm, nrs: []uintptr{
			unix.SYS_MBIND, unix.SYS_SET_MEMPOLICY, unix.SYS_SET_MEMPOLICY_HOME_NODE,
			unix.SYS_MIGRATE_PAGES, unix.SYS_MOVE_PAGES,
		}},
		{why: "never implemented on x86_64: ENOSYS, as the kernel answers", ret: enosys, nrs: []uintptr{
			unix.SYS_CREATE_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE, unix.SYS_GETPMSG,
			unix.SYS_PUTPMSG, unix.SYS_AFS_SYSCALL, unix.SYS_TUXCALL, unix.SYS_SECURITY, unix.SYS_VSERVER,
			unix.SYS_EPOLL_CTL_OLD, unix.SYS_EPOLL_WAIT_OLD,
		}},
	}
}
