// Package connlimit caps the connections open on a listener, overall and
// per client address, refusing over the cap at once instead of blocking.
package connlimit

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
)

// Listener caps the connections open on the web port, overall and
// per client address, so that nobody can tie up the node without signing
// in by opening connections and leaving them be.
//
// Over a cap, Accept closes the new connection at once and goes on to the
// next one, rather than blocking as golang.org/x/net/netutil's
// LimitListener does. Blocking would leave every later connection, from
// anyone, waiting in the kernel's backlog until a slot frees: one address
// flooding the port would starve all the others. Closing promptly keeps
// the backlog moving, so a client under its own cap is still accepted
// while another address is refused, and connections already open (a
// browser's keep-alive ones) keep working at the cap. A refused client
// sees the connection reset or closed, and may retry.
type Listener struct {
	net.Listener
	max, perIP int // 0 means no cap

	mu    sync.Mutex
	open  int
	peak  int            // most connections ever open at once, for tests
	byIP  map[string]int // open connections by client address
	refus int            // connections refused, for tests
}

// New wraps ln; a cap of 0 means none.
func New(ln net.Listener, max, perIP int) *Listener {
	return &Listener{Listener: ln, max: max, perIP: perIP, byIP: map[string]int{}}
}

func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := clientIP(c.RemoteAddr())
		if l.take(ip) {
			return &limitConn{Conn: c, l: l, ip: ip}, nil
		}
		c.Close()
	}
}

// take counts a new connection from ip, or reports that it is over a cap.
func (l *Listener) take(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open >= l.max || l.perIP > 0 && l.byIP[ip] >= l.perIP {
		l.refus++
		return false
	}
	l.open++
	l.peak = max(l.peak, l.open)
	l.byIP[ip]++
	return true
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.byIP[ip]--; l.byIP[ip] <= 0 {
		delete(l.byIP, ip)
	}
}

// Stats reports the connections open now, the most ever open at once, and
// how many were refused.
func (l *Listener) Stats() (open, peak, refused int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.peak, l.refus
}

// clientIP is the address a connection's cap is counted against: the IP
// without the port, and for IPv6 its /64, which one host usually has all
// of.
func clientIP(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		if ta.IP.To4() == nil {
			return ta.IP.Mask(net.CIDRMask(64, 128)).String()
		}
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

type limitConn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.release(c.ip) })
	return err
}

// ReadFrom lets net/http splice a long answer from a grain's socket
// straight into the client's (forward.Pool), as the bare TCP connection
// would.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// SyscallConn passes the socket on, for callers that read and write it
// themselves (forward.Socket); closing stays with this connection.
func (c *limitConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}
