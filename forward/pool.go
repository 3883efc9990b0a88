// Package forward sends HTTP/1.1 requests to one upstream (an app in its
// sandbox) over a pool of keep-alive connections and streams the answers
// back: the lean path of the node's grain proxy. It writes the request
// head it is given once, straight onto a pooled connection, and copies
// bodies both ways through pooled buffers (a long answer of known length
// is spliced from socket to socket), on the handler's own goroutine.
// What it forwards is the caller's business: it authenticates nothing and
// sends the request's headers as they are, less the hop-by-hop ones.
package forward

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Pool holds the keep-alive connections to one upstream. Its zero value
// is not usable; make one with New.
type Pool struct {
	dial func(context.Context) (net.Conn, error)
	// rt is for what Forward does not do itself: upgrades (websockets)
	// and callers that want an http.RoundTripper (the federation relay).
	rt *http.Transport

	mu     sync.Mutex
	idle   []*conn // most recently used last
	closed bool
}

// MaxIdle bounds the idle connections a Pool keeps, and IdleTimeout how
// long it keeps one.
const (
	MaxIdle     = 64
	IdleTimeout = 30 * time.Second
)

// New returns a pool of connections made by dial.
func New(dial func(context.Context) (net.Conn, error)) *Pool {
	return &Pool{
		dial: dial,
		rt: &http.Transport{
			DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
			MaxIdleConns:        MaxIdle,
			MaxIdleConnsPerHost: MaxIdle,
			IdleConnTimeout:     IdleTimeout,
			DisableCompression:  true,
		},
	}
}

// RoundTrip sends r with net/http's own client, on connections of its
// own: for upgrades and for callers that need an http.RoundTripper.
func (p *Pool) RoundTrip(r *http.Request) (*http.Response, error) { return p.rt.RoundTrip(r) }

// CloseIdleConnections closes the connections no request is using.
func (p *Pool) CloseIdleConnections() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.nc.Close()
	}
	p.rt.CloseIdleConnections()
}

// Close closes the idle connections, and every connection in use as its
// request ends: the upstream is going away.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.CloseIdleConnections()
}

// Idle is the number of idle connections (for tests).
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// conn is one connection to the upstream with its buffers.
type conn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	sock      *Socket // what br and bw read and write; nil: nc itself
	heads     Heads   // the answers' heads
	idleSince time.Time
	cut       func() // cuts the connection where it blocks: a request's end (made once, not per request)
}

// get returns an idle connection (reused true) or a new one.
func (p *Pool) get(ctx context.Context) (c *conn, reused bool, err error) {
	now := time.Now()
	p.mu.Lock()
	for len(p.idle) > 0 {
		c = p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if now.Sub(c.idleSince) < IdleTimeout {
			p.mu.Unlock()
			return c, true, nil
		}
		c.nc.Close()
	}
	p.mu.Unlock()
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	// The buffers read and write the socket with raw calls (Socket);
	// splicing a long answer and closing still go through nc.
	c = &conn{nc: nc}
	c.cut = func() { nc.SetDeadline(aLongTimeAgo) }
	var rw io.ReadWriter = nc
	if c.sock = NewSocket(nc); c.sock != nil {
		rw = c.sock
	}
	c.br, c.bw = bufio.NewReaderSize(rw, 4<<10), bufio.NewWriterSize(rw, 4<<10)
	return c, false, nil
}

// put keeps c for the next request, or closes it.
func (p *Pool) put(c *conn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	if !p.closed && len(p.idle) < MaxIdle {
		p.idle = append(p.idle, c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}
