package main

import "syscall"

// int80 makes a 32-bit (i386) syscall.
func int80(nr uintptr) uintptr

// forkPause forks a child that only sleeps. The child is a bare copy of
// this thread, so it must not touch the Go runtime: nosplit, raw syscalls.
//
//go:nosplit
//go:norace
func forkPause() (int, syscall.Errno) {
	pid, _, e := syscall.RawSyscall(syscall.SYS_CLONE, uintptr(syscall.SIGCHLD), 0, 0)
	if e != 0 {
		return -1, e
	}
	if pid == 0 {
		for {
			syscall.RawSyscall(syscall.SYS_PAUSE, 0, 0, 0)
		}
	}
	return int(pid), 0
}
