package tlsnode

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Split divides one port's connections by their first byte: a TLS
// handshake (0x16) goes to TLS, anything else to Plain. So one port
// serves HTTPS and, to a browser typing http://, the redirect to it.
// Connections can also be handed to TLS from elsewhere (Inject): those a
// friend's node forwards over libp2p.
type Split struct {
	ln          net.Listener
	peekTimeout time.Duration
	TLS, Plain  *ConnQueue
	route       atomic.Pointer[router]
}

// router sends TLS connections for names outside the node's own domain
// elsewhere (to a friend's node, unread).
type router struct {
	domain  string
	peekSNI func(net.Conn) (string, net.Conn, error)
	forward func(c net.Conn, sni string)
}

// Forward makes TLS connections whose SNI is not domain or a name under
// it go to forward, which owns them from then on. peekSNI reads the
// ClientHello and gives the connection back whole.
func (s *Split) Forward(domain string, peekSNI func(net.Conn) (string, net.Conn, error), forward func(c net.Conn, sni string)) {
	s.route.Store(&router{domain: strings.ToLower(domain), peekSNI: peekSNI, forward: forward})
}

// NewSplit starts sorting ln's connections. A client gets peekTimeout to
// send its first byte.
func NewSplit(ln net.Listener, peekTimeout time.Duration) *Split {
	s := &Split{ln: ln, peekTimeout: peekTimeout, TLS: NewConnQueue(ln.Addr()), Plain: NewConnQueue(ln.Addr())}
	go s.run()
	return s
}

func (s *Split) run() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.TLS.Close()
			s.Plain.Close()
			return
		}
		go s.sort(c)
	}
}

func (s *Split) sort(c net.Conn) {
	var b [1]byte
	c.SetReadDeadline(time.Now().Add(s.peekTimeout))
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	pc := net.Conn(&PrefixConn{Conn: c, prefix: b[:]})
	q := s.Plain
	if b[0] == 0x16 {
		q = s.TLS
		if r := s.route.Load(); r != nil {
			sni, back, err := r.peekSNI(pc)
			if err != nil {
				c.Close()
				return
			}
			pc = back
			sni = strings.ToLower(strings.TrimSuffix(sni, "."))
			if sni != "" && sni != r.domain && !strings.HasSuffix(sni, "."+r.domain) && net.ParseIP(sni) == nil {
				c.SetReadDeadline(time.Time{})
				r.forward(pc, sni)
				return
			}
		}
	}
	c.SetReadDeadline(time.Time{})
	if !q.Put(pc) {
		c.Close()
	}
}

// Close stops accepting.
func (s *Split) Close() error {
	err := s.ln.Close()
	s.TLS.Close()
	s.Plain.Close()
	return err
}

// PrefixConn is a connection some of whose first bytes were read already:
// Read gives them again first.
type PrefixConn struct {
	net.Conn
	prefix []byte
}

// NewPrefixConn returns c with prefix put back in front of what it reads.
func NewPrefixConn(c net.Conn, prefix []byte) *PrefixConn {
	return &PrefixConn{Conn: c, prefix: prefix}
}

func (c *PrefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Pending is what of the prefix Read has not given yet.
func (c *PrefixConn) Pending() []byte { return c.prefix }

// ReadFrom passes the connection's own on, so that a server writing a
// long answer onto it still splices or sends a file straight to the
// socket.
func (c *PrefixConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides a ReadFrom, so that io.Copy does not call it again.
type writerOnly struct{ io.Writer }

// ConnQueue is a net.Listener fed by Put: http.Server serves it like any
// other.
type ConnQueue struct {
	addr  net.Addr
	ch    chan net.Conn
	once  sync.Once
	close chan struct{}
}

// NewConnQueue returns an empty queue whose Addr is addr.
func NewConnQueue(addr net.Addr) *ConnQueue {
	return &ConnQueue{addr: addr, ch: make(chan net.Conn), close: make(chan struct{})}
}

// Put hands a connection to Accept; false if the queue is closed.
func (q *ConnQueue) Put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.close:
		return false
	}
}

// Accept waits for the next connection put in the queue.
func (q *ConnQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.close:
		return nil, net.ErrClosed
	}
}

// Close makes Accept and Put fail from now on.
func (q *ConnQueue) Close() error {
	q.once.Do(func() { close(q.close) })
	return nil
}

// Addr is the address of the port the connections came in on.
func (q *ConnQueue) Addr() net.Addr { return q.addr }
