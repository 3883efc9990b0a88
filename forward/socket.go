package forward

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Socket reads and writes a connected socket with read(2) and write(2)
// made as raw system calls (syscall.RawSyscall inside syscall.RawConn),
// without the Go runtime's bookkeeping for a call that may block. The
// socket is non-blocking, so neither call blocks: one that would returns
// EAGAIN, and the goroutine waits in the netpoller exactly as net.Conn's
// Read and Write wait, deadlines included.
//
// What that saves is the runtime's handing off of the goroutine's P
// around each call. On a busy machine a socket write into loopback takes
// long enough (the kernel runs the receiver's side of TCP inside it)
// that the scheduler's monitor finds the P still in the call on two of
// its 20 µs ticks, takes it and wakes another thread to run it; when the
// call returns, its thread must get a P back or sleep. On a 2-core
// machine under load that cost the proxy about 0.8 context switches and
// 10 µs of CPU per request (BENCHMARKS.md, "Socket"). A raw call keeps
// the P for the few microseconds the kernel takes.
//
// A Socket neither owns nor closes the connection; its net.Conn does,
// and its deadlines apply. Reads may run beside writes; two reads (or
// two writes) at once take turns.
type Socket struct {
	rc syscall.RawConn

	rmu  sync.Mutex
	rbuf []byte
	rn   int
	rerr syscall.Errno
	read func(uintptr) bool // s.readFD, made once: a call allocates nothing

	wmu   sync.Mutex
	wbuf  []byte
	wn    int
	werr  syscall.Errno
	write func(uintptr) bool
}

// NewSocket returns c's socket, or nil when c offers none
// (syscall.Conn): a pipe, a TLS connection, or a wrapper that reads
// ahead or rewrites what passes (tlsnode.PrefixConn), whose bytes a
// Socket must never bypass.
func NewSocket(c net.Conn) *Socket {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &Socket{rc: rc}
	s.read, s.write = s.readFD, s.writeFD
	return s
}

// Read reads what the socket has, waiting until it has something; 0
// bytes read from the socket is io.EOF.
func (s *Socket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	s.rbuf = p
	err := s.rc.Read(s.read)
	s.rbuf = nil
	switch {
	case err != nil: // the deadline, or the connection closed
		return 0, err
	case s.rerr != 0:
		return 0, os.NewSyscallError("read", s.rerr)
	case s.rn == 0:
		return 0, io.EOF
	}
	return s.rn, nil
}

func (s *Socket) readFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&s.rbuf[0])), uintptr(len(s.rbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait until it is readable
		case 0:
			s.rn, s.rerr = int(n), 0
		default:
			s.rn, s.rerr = 0, e
		}
		return true
	}
}

// Write writes all of p, waiting while the socket's buffer is full.
func (s *Socket) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	total := 0
	for len(p) > 0 {
		s.wbuf = p
		err := s.rc.Write(s.write)
		s.wbuf = nil
		switch {
		case err != nil:
			return total, err
		case s.werr != 0:
			return total, os.NewSyscallError("write", s.werr)
		}
		total += s.wn
		p = p[s.wn:]
	}
	return total, nil
}

func (s *Socket) writeFD(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&s.wbuf[0])), uintptr(len(s.wbuf)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
			s.wn, s.werr = int(n), 0
		default:
			s.wn, s.werr = 0, e
		}
		return true
	}
}
