//go:build amd64

package sandbox

import (
	"bufio"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// vm runs the compiled filter in x/net/bpf's interpreter.
type vm struct{ *bpf.VM }

func newVM(t *testing.T) vm {
	t.Helper()
	prog := filter()
	raw := make([]bpf.RawInstruction, len(prog))
	for i, ins := range prog {
		raw[i] = bpf.RawInstruction{Op: ins.Code, Jt: ins.Jt, Jf: ins.Jf, K: ins.K}
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	v, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("the filter is not a valid program: %v", err)
	}
	return vm{v}
}

// run returns the filter's verdict. The interpreter loads words
// big-endian, as packet filters do, so each 32-bit field of struct
// seccomp_data is written that way; the filter only loads aligned words.
// high fills the high halves of the arguments, which the filter must
// ignore as the kernel does.
func (v vm) run(t *testing.T, arch, nr uint32, args [6]uint32, high uint32) uint32 {
	t.Helper()
	b := make([]byte, 64)
	binary.BigEndian.PutUint32(b[0:], nr)
	binary.BigEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.BigEndian.PutUint32(b[16+8*i:], a)
		binary.BigEndian.PutUint32(b[20+8*i:], high)
	}
	r, err := v.Run(b)
	if err != nil {
		t.Fatalf("run filter on nr %d: %v", nr, err)
	}
	return uint32(r)
}

// TestSeccompConformance checks, for every syscall number the table knows
// and beyond it, that the compiled program decides as the table says.
func TestSeccompConformance(t *testing.T) {
	v := newVM(t)
	p := sandboxPolicy()
	check := func(arch, nr uint32, args [6]uint32) {
		t.Helper()
		want := p.decide(arch, nr, args)
		for _, high := range []uint32{0, 0xffffffff} {
			if got := v.run(t, arch, nr, args, high); got != want {
				t.Errorf("arch %#x nr %d args %v (high halves %#x): filter says %#x, table %#x", arch, nr, args, high, got, want)
			}
		}
	}
	var zero [6]uint32
	for nr := uint32(0); nr <= 1024; nr++ {
		check(auditArch, nr, zero)
	}
	for _, nr := range []uint32{x32Bit - 1, x32Bit, x32Bit + unix.SYS_GETPID, x32Bit + unix.SYS_SOCKET, 0x7fffffff, 0xffffffff} {
		check(auditArch, nr, zero)
	}
	for _, arch := range []uint32{unix.AUDIT_ARCH_I386, 0, unix.AUDIT_ARCH_AARCH64} {
		check(arch, unix.SYS_GETPID, zero)
	}
	for _, nr := range []uint32{unix.SYS_SOCKET, unix.SYS_SOCKETPAIR} {
		for fam := uint32(0); fam < 64; fam++ {
			for proto := uint32(0); proto < 32; proto++ {
				check(auditArch, nr, [6]uint32{fam, unix.SOCK_STREAM, proto})
			}
		}
		check(auditArch, nr, [6]uint32{0xffffffff, 0, 0})
	}
	for bit := range 32 {
		check(auditArch, unix.SYS_CLONE, [6]uint32{1 << bit})
		check(auditArch, unix.SYS_CLONE, [6]uint32{1<<bit | unix.CLONE_VM | unix.CLONE_THREAD})
	}
	for _, req := range append([]uint32{unix.TCGETS, unix.TIOCINQ, unix.TIOCGWINSZ, 0, 0xffffffff}, refusedIoctls...) {
		check(auditArch, unix.SYS_IOCTL, [6]uint32{0, req})
	}
}

// TestSeccompTable asserts what the table says, independently of how it
// is written: the calls runtimes need pass, the dangerous ones and every
// other socket family fail with the right errno, and every syscall x/sys
// knows for amd64 has a group.
func TestSeccompTable(t *testing.T) {
	p := sandboxPolicy()
	v := newVM(t)
	var zero [6]uint32
	verdict := func(nr uint32, args [6]uint32) uint32 { return v.run(t, auditArch, nr, args, 0) }
	for _, nr := range []uint32{unix.SYS_READ, unix.SYS_WRITE, unix.SYS_MMAP, unix.SYS_FUTEX, unix.SYS_EPOLL_PWAIT,
		unix.SYS_RT_SIGRETURN, unix.SYS_EXECVE, unix.SYS_WAIT4, unix.SYS_GETRANDOM, unix.SYS_SCHED_GETAFFINITY,
		unix.SYS_OPENAT, unix.SYS_STATX, unix.SYS_ACCEPT4, unix.SYS_PRCTL, unix.SYS_EXIT_GROUP, unix.SYS_RSEQ,
		unix.SYS_SHMGET, unix.SYS_SEMOP, unix.SYS_IO_SUBMIT, unix.SYS_CLOSE_RANGE, unix.SYS_PIDFD_OPEN} {
		if got := verdict(nr, zero); got != retAllow {
			t.Errorf("syscall %d: %#x, want allowed", nr, got)
		}
	}
	eperm, enosys, eaf := retErrno(unix.EPERM), retErrno(unix.ENOSYS), retErrno(unix.EAFNOSUPPORT)
	for nr, want := range map[uint32]uint32{
		unix.SYS_PTRACE: eperm, unix.SYS_MOUNT: eperm, unix.SYS_UNSHARE: eperm, unix.SYS_SETNS: eperm,
		unix.SYS_BPF: eperm, unix.SYS_IO_URING_SETUP: eperm, unix.SYS_KEXEC_LOAD: eperm, unix.SYS_USERFAULTFD: eperm,
		unix.SYS_OPEN_BY_HANDLE_AT: eperm, unix.SYS_PERF_EVENT_OPEN: eperm, unix.SYS_KEYCTL: eperm,
		unix.SYS_CLONE3: enosys, unix.SYS_TUXCALL: enosys,
		maxSyscall + 1: enosys, 400: enosys, // unknown: libc falls back
		x32Bit + unix.SYS_GETPID: eperm,
	} {
		if got := verdict(nr, zero); got != want {
			t.Errorf("syscall %d: %#x, want %#x", nr, got, want)
		}
	}
	allowedFam := map[uint32]bool{unix.AF_UNIX: true, unix.AF_INET: true, unix.AF_INET6: true}
	for fam := uint32(0); fam <= unix.AF_MAX; fam++ {
		want := eaf
		if allowedFam[fam] {
			want = retAllow
		}
		if fam == unix.AF_NETLINK {
			continue
		}
		for _, nr := range []uint32{unix.SYS_SOCKET, unix.SYS_SOCKETPAIR} {
			if got := verdict(nr, [6]uint32{fam, unix.SOCK_STREAM}); got != want {
				t.Errorf("socket family %d (call %d): %#x, want %#x", fam, nr, got, want)
			}
		}
	}
	if got := verdict(unix.SYS_SOCKET, [6]uint32{unix.AF_VSOCK, unix.SOCK_STREAM}); got != eaf {
		t.Errorf("AF_VSOCK: %#x, want EAFNOSUPPORT", got)
	}
	for proto := uint32(0); proto < 32; proto++ {
		want := eaf
		if proto == unix.NETLINK_ROUTE {
			want = retAllow
		}
		if got := verdict(unix.SYS_SOCKET, [6]uint32{unix.AF_NETLINK, unix.SOCK_RAW, proto}); got != want {
			t.Errorf("netlink protocol %d: %#x, want %#x", proto, got, want)
		}
	}
	if got := verdict(unix.SYS_CLONE, [6]uint32{unix.CLONE_NEWUSER}); got != eperm {
		t.Errorf("clone(CLONE_NEWUSER): %#x, want EPERM", got)
	}
	if got := verdict(unix.SYS_CLONE, [6]uint32{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD}); got != retAllow {
		t.Errorf("clone of a thread: %#x, want allowed", got)
	}
	for _, req := range []uint32{unix.TIOCSTI, unix.TIOCLINUX} {
		if got := verdict(unix.SYS_IOCTL, [6]uint32{0, req}); got != eperm {
			t.Errorf("ioctl %#x: %#x, want EPERM", req, got)
		}
	}
	if got := verdict(unix.SYS_IOCTL, [6]uint32{0, unix.TIOCINQ}); got != retAllow {
		t.Errorf("ioctl FIONREAD: %#x, want allowed", got)
	}

	names := xsysNames(t)
	if len(names) < 350 {
		t.Fatalf("read only %d syscall names from x/sys", len(names))
	}
	for name, nr := range names {
		if p.lookup(nr) == nil {
			t.Errorf("%s (%d) is in no group of the table: put it in one, with a reason", name, nr)
		}
	}
	if got := uintptr(len(RefusedSyscalls())); got == 0 || got > maxSyscall {
		t.Errorf("RefusedSyscalls lists %d calls", got)
	}
}

// xsysNames reads x/sys's amd64 syscall numbers from its source in the
// module cache.
func xsysNames(t *testing.T) map[string]uintptr {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys").Output()
	if err != nil {
		t.Fatalf("go list golang.org/x/sys: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(out)), "unix", "zsysnum_linux_amd64.go"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	re := regexp.MustCompile(`^\s*SYS_(\w+)\s*=\s*(\d+)`)
	names := map[string]uintptr{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			n, _ := strconv.Atoi(m[2])
			names[strings.ToLower(m[1])] = uintptr(n)
		}
	}
	return names
}
