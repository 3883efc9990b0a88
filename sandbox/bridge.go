package sandbox

import (
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// The bridge is how an app with no network reaches what the node offers
// it (package powerbox): the init opens two listeners inside the sandbox
// before it starts the app, and hands them to the host, which serves them.
// The app connects; it never holds the listening sockets, so it cannot
// answer in the node's place, and whatever connects to a sandbox's
// listeners is that sandbox: the host knows which grain asks without
// taking the app's word for it.
//
//	init -> host  'B' with two fds (SCM_RIGHTS): a TCP listener on
//	              127.0.0.1:Spec.Bridge, then a unix stream listener at
//	              BridgeSocket; once, before 'R', only if the spec asks
const msgBridge = 'B'

// BridgeSocket is where the bridge's unix socket is inside a sandbox.
const BridgeSocket = "/tmp/erg-bridge.sock"

// Bridge is a sandbox's bridge listeners: TCP on the sandbox's loopback,
// and the unix socket. The host serves them; they close when the sandbox
// ends.
type Bridge struct {
	TCP  net.Listener
	Unix net.Listener
}

// startBridge opens the bridge's listeners in the init, after the mounts
// (the unix socket lives in the sandbox's /tmp) and before the app starts.
func startBridge(c *initConfig) error {
	if c.Bridge == 0 {
		return nil
	}
	tfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	defer unix.Close(tfd)
	if err := unix.Bind(tfd, &unix.SockaddrInet4{Port: int(c.Bridge), Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		return fmt.Errorf("bridge: bind 127.0.0.1:%d: %w", c.Bridge, err)
	}
	if err := unix.Listen(tfd, 128); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	ufd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	defer unix.Close(ufd)
	if err := unix.Bind(ufd, &unix.SockaddrUnix{Name: BridgeSocket}); err != nil {
		return fmt.Errorf("bridge: bind %s: %w", BridgeSocket, err)
	}
	if err := unix.Listen(ufd, 128); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	initSend([]byte{msgBridge}, unix.UnixRights(tfd, ufd))
	return nil
}

// takeBridge checks the listeners the init sent and keeps them. It takes
// ownership of fds.
func (s *Sandbox) takeBridge(fds []int) error {
	if len(fds) != 2 {
		closeAll(fds)
		return fmt.Errorf("bridge message carried %d fds, want 2", len(fds))
	}
	s.mu.Lock()
	again := s.bridge != nil
	s.mu.Unlock()
	if again {
		closeAll(fds)
		return errors.New("repeated bridge message")
	}
	tl, err := listenerOf(fds[0], unix.AF_INET, "sandbox-bridge-tcp")
	if err != nil {
		unix.Close(fds[1])
		return err
	}
	ul, err := listenerOf(fds[1], unix.AF_UNIX, "sandbox-bridge-unix")
	if err != nil {
		tl.Close()
		return err
	}
	if a, ok := tl.Addr().(*net.TCPAddr); !ok || !a.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		tl.Close()
		ul.Close()
		return fmt.Errorf("bridge listener on %v, not loopback", tl.Addr())
	}
	s.mu.Lock()
	s.bridge = &Bridge{TCP: tl, Unix: ul}
	s.mu.Unlock()
	go func() {
		<-s.done
		tl.Close()
		ul.Close()
	}()
	return nil
}

// listenerOf turns a passed fd into a listener after checking it is a
// listening stream socket of the family given. It takes ownership of fd.
func listenerOf(fd, family int, name string) (net.Listener, error) {
	typ, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	dom, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	acc, err3 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err := errors.Join(err1, err2, err3); err != nil || typ != unix.SOCK_STREAM || dom != family || acc != 1 {
		unix.Close(fd)
		return nil, fmt.Errorf("passed fd is not a listening socket of family %d (type %d, domain %d, listening %d, %v)", family, typ, dom, acc, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), name)
	l, err := net.FileListener(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("passed fd: %w", err)
	}
	return l, nil
}

// Bridge returns the sandbox's bridge listeners, or nil if its spec asked
// for none.
func (s *Sandbox) Bridge() *Bridge {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bridge
}
