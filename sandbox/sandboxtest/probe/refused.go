package main

import (
	"strconv"
	"unsafe"

	"erg/sandbox"

	"golang.org/x/sys/unix"
)

// refused makes every syscall the sandbox's table refuses outright, with
// zero arguments (the filter decides before the kernel reads them), opens
// a socket in every address family in every common type, and makes the
// refused terminal ioctls; it answers each attempt's errno, 0 for success.
func refused() map[string]any {
	calls := map[string]int{}
	for _, r := range sandbox.RefusedSyscalls() {
		_, _, e := unix.Syscall6(r.Nr, 0, 0, 0, 0, 0, 0)
		calls[strconv.Itoa(int(r.Nr))] = int(e)
	}
	sockets := map[string]int{}
	try := func(key string, fam, typ, proto int) {
		fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			unix.Close(fd)
		}
		sockets[key] = errnoOf(err)
		fds, err := unix.Socketpair(fam, typ|unix.SOCK_CLOEXEC, proto)
		if err == nil {
			unix.Close(fds[0])
			unix.Close(fds[1])
		}
		sockets["pair/"+key] = errnoOf(err)
	}
	for fam := 0; fam <= unix.AF_MAX; fam++ {
		for _, typ := range []int{unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET, unix.SOCK_RAW} {
			if fam == unix.AF_NETLINK {
				for proto := 0; proto < 32; proto++ {
					try(strconv.Itoa(fam)+"/"+strconv.Itoa(typ)+"/"+strconv.Itoa(proto), fam, typ, proto)
				}
				continue
			}
			try(strconv.Itoa(fam)+"/"+strconv.Itoa(typ)+"/0", fam, typ, 0)
		}
	}
	ioctls := map[string]int{}
	for _, req := range []uint{unix.TIOCSTI, unix.TIOCLINUX, unix.TIOCCONS, unix.TIOCSETD} {
		var b [8]byte
		_, _, e := unix.Syscall(unix.SYS_IOCTL, 0, uintptr(req), uintptr(unsafe.Pointer(&b)))
		ioctls[strconv.FormatUint(uint64(req), 16)] = int(e)
	}
	return map[string]any{"calls": calls, "sockets": sockets, "ioctls": ioctls}
}
