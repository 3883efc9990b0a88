package webui

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"erg"
	"erg/forward"
	"erg/tlsnode"
)

// The grain loop. A plain HTTP/1.1 connection to a grain's origin whose
// first request passed every check is taken out of net/http's server
// (hijacked) and served here, one request after another: each head is
// read by forward.Heads when it is of the plainest kind, else with
// net/http's own parser (http.ReadRequest), and checked as the server
// checks it, every request is admitted again (the grain, its
// origin, the session: admit, as for the first), rewritten and relayed
// into the grain by forward.Pool.Relay, which writes the answer onto
// the connection itself. The server would cost per request a goroutine
// watching for the client to hang up, deadlines, a response and its
// buffers, and a park and wake of the handler for each read; the loop
// sets one deadline per request and parks only to wait for the next.
//
// Whatever the loop does not serve itself it gives back to net/http
// unanswered, at the request's start: another host, a login, a
// websocket, an Expect, any refusal (401, 403, 404), a head it cannot
// read. The connection, with the bytes read so far in front, is handed to
// a second http.Server on HandedBack, which answers as it would have,
// and may hand it to the loop again. HTTP/2 and TLS never come here.

// relayer is a grain transport that writes its answers onto a raw
// HTTP/1.1 connection (forward.Pool).
type relayer interface {
	Relay(ctx context.Context, cw *bufio.Writer, client io.Writer, r *http.Request, answer func(http.Header)) (started bool, err error)
}

// grainLoops are the connections the grain loop serves.
type grainLoops struct {
	h      *Handler
	ctx    context.Context // the loop's requests; cancelled when Shutdown gives up waiting
	cancel context.CancelFunc
	on     atomic.Bool        // someone serves HandedBack
	served atomic.Int64       // requests the loop admitted and served itself
	quick  atomic.Int64       // heads it read with forward.Heads, not http.ReadRequest
	raw    atomic.Int64       // connections it reads and writes through a forward.Socket
	back   *tlsnode.ConnQueue // connections given back to net/http (HandedBack)

	closing atomic.Bool // Shutdown began
	mu      sync.Mutex
	conns   map[*grainConn]struct{}
	wg      sync.WaitGroup
}

func newGrainLoops(h *Handler) *grainLoops {
	l := &grainLoops{h: h, back: tlsnode.NewConnQueue(loopAddr{}), conns: map[*grainConn]struct{}{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// HandedBack is where the grain loop gives connections back to net/http:
// serve it with an http.Server set up as the web port's. Asking for it
// turns the loop on; without it every request stays with net/http.
func (h *Handler) HandedBack() net.Listener {
	h.loops.on.Store(true)
	return h.loops.back
}

// LoopServed counts the requests the grain loop admitted and served
// itself, outside net/http: how a test or a benchmark tells that the
// loop, not the ordinary path, answered.
func (h *Handler) LoopServed() int64 { return h.loops.served.Load() }

// Shutdown stops the grain loop: idle connections are closed at once,
// busy ones after their answer. It waits for them until ctx ends, then
// closes the rest. Call it after the servers' Shutdown.
func (h *Handler) Shutdown(ctx context.Context) error {
	l := h.loops
	l.closing.Store(true)
	l.mu.Lock()
	for gc := range l.conns {
		if !gc.busy.Load() {
			gc.c.Close()
		}
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for gc := range l.conns {
		gc.c.Close()
	}
	l.mu.Unlock()
	l.cancel() // and their requests into the grains
	return ctx.Err()
}

// take hijacks r's connection for the loop, when r is one it serves: a
// plain HTTP/1.1 request without a body, an Expect or an upgrade, on a
// connection that stays open. nil leaves r to the caller.
func (l *grainLoops) take(w http.ResponseWriter, r *http.Request, id string) *grainConn {
	if !l.on.Load() || r.TLS != nil || r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Close ||
		r.Body != http.NoBody || r.Header["Expect"] != nil || r.Header["Upgrade"] != nil {
		return nil
	}
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	hj, ok := w.(http.Hijacker)
	if srv == nil || !ok {
		return nil
	}
	if l.closing.Load() {
		return nil
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil
	}
	if pc, ok := c.(*tlsnode.PrefixConn); ok && len(pc.Pending()) == 0 {
		c = pc.Conn // back again: no need to read through the wrapper
	}
	gc := &grainConn{l: l, id: id, c: c, remote: r.RemoteAddr,
		idle: srv.IdleTimeout, header: srv.ReadHeaderTimeout, read: srv.ReadTimeout, maxHeader: srv.MaxHeaderBytes}
	// As net/http reads its own settings.
	if gc.idle == 0 {
		gc.idle = gc.read
	}
	if gc.header == 0 {
		gc.header = gc.read
	}
	if gc.maxHeader <= 0 {
		gc.maxHeader = http.DefaultMaxHeaderBytes
	}
	gc.in.c, gc.in.limit = c, -1
	if s := forward.NewSocket(c); s != nil {
		// Read and write the socket with raw calls; deadlines, splicing
		// (Relay's client) and closing still go through c.
		gc.in.c = s
		brw.Writer.Reset(s) // empty: Hijack just reset it onto c
		l.raw.Add(1)
	}
	// The connection's own context: each request's context registers
	// with it, not with the loop's, which every connection shares.
	gc.ctx, gc.cancel = context.WithCancel(l.ctx)
	if n := brw.Reader.Buffered(); n > 0 {
		ahead, _ := brw.Reader.Peek(n)
		gc.in.prefix = bytes.Clone(ahead) // the next request, pipelined
	}
	gc.br = bufio.NewReaderSize(&gc.in, 4<<10)
	gc.bw = brw.Writer // the server's, reset onto the connection
	gc.answer = func(hdr http.Header) {
		// Only the node's shell may frame a grain. The value's slice is
		// the connection's: Relay writes the answer out before the next.
		if vs := hdr["Content-Security-Policy"]; vs != nil {
			hdr["Content-Security-Policy"] = append(vs, gc.csp)
			return
		}
		gc.cspv[0] = gc.csp
		hdr["Content-Security-Policy"] = gc.cspv[:1:1]
	}
	gc.busy.Store(true)
	l.mu.Lock()
	l.conns[gc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	return gc
}

// setBusy records whether gc is serving a request, and reports false
// when the loop is closing: gc is to close. Two atomics, no lock: every
// request passes here twice. Shutdown stores closing before it reads
// busy, and gc stores busy before it reads closing, so of a connection
// going idle as Shutdown begins one of the two sees the other and closes
// it.
func (l *grainLoops) setBusy(gc *grainConn, busy bool) bool {
	gc.busy.Store(busy)
	return !l.closing.Load()
}

func (l *grainLoops) remove(gc *grainConn) {
	if gc.sessStop != nil {
		gc.sessStop() // unhooks it from the session's context
	}
	gc.cancel()
	l.mu.Lock()
	delete(l.conns, gc)
	l.mu.Unlock()
	l.wg.Done()
}

// grainConn is one connection the loop serves, for one grain.
type grainConn struct {
	l      *grainLoops
	ctx    context.Context
	cancel context.CancelFunc
	id     string
	c      net.Conn
	remote string
	in     clientReader
	heads  forward.Heads // the requests' heads, when plain
	br     *bufio.Reader
	bw     *bufio.Writer
	gone   bool        // handed back to net/http
	busy   atomic.Bool // serving a request (setBusy)
	// When the read deadline was last set for an idle wait; zero when
	// another deadline (a head's, a body's) was set since.
	idleSet time.Time

	idle, header, read time.Duration
	maxHeader          int

	csp    string
	cspv   [1]string // the answer's Content-Security-Policy, when the grain sent none
	answer func(http.Header)

	// The last session's context (sessionCtx).
	sess     context.Context
	sessStop context.CancelFunc
	sessOf   context.Context
	sessEnd  time.Time
}

// serve answers the connection's requests after its first, until it is
// closed or handed back.
func (gc *grainConn) serve() {
	defer gc.l.remove(gc)
	for {
		r, ok := gc.next()
		if !ok {
			return
		}
		if !gc.serveOne(r) {
			if !gc.gone {
				gc.c.Close()
			}
			return
		}
	}
}

// close ends a connection the loop took, when its first request left it
// unusable.
func (gc *grainConn) close() {
	gc.c.Close()
	gc.l.remove(gc)
}

// next waits for the next request and reads its head. false: the
// connection was closed, or handed back.
func (gc *grainConn) next() (*http.Request, bool) {
	if !gc.l.setBusy(gc, false) {
		gc.c.Close()
		return nil, false
	}
	if gc.idle > 0 {
		// Moving the deadline costs a timer's update. One set for the
		// last wait serves while it is nearly whole: the connection may
		// close up to a 64th of the idle timeout early.
		if now := time.Now(); gc.idleSet.IsZero() || now.Sub(gc.idleSet) >= gc.idle/64 {
			gc.c.SetReadDeadline(now.Add(gc.idle))
			gc.idleSet = now
		}
	}
	_, err := gc.br.Peek(1)
	if !gc.l.setBusy(gc, true) || err != nil {
		gc.c.Close()
		return nil, false
	}
	if gc.header > 0 && !headBuffered(gc.br) {
		// Slow to send the rest of its head: as long as the server would
		// wait for any head.
		gc.c.SetReadDeadline(time.Now().Add(gc.header))
		gc.idleSet = time.Time{}
	}
	gc.in.startHead(gc.br, gc.maxHeader)
	r, quick := gc.heads.Request(gc.br) // err is nil here: Peek's, checked above
	if !quick {
		r, err = http.ReadRequest(gc.br)
	}
	gc.in.record = false
	gc.in.limit = -1
	switch {
	case err != nil && errors.Is(gc.in.err, os.ErrDeadlineExceeded):
		// The reader may have turned a read cut by the deadline into a
		// short line; either way, it is what the server does with a
		// connection slow to send its head.
		gc.c.Close()
		return nil, false
	case err != nil || !serverWouldTake(r):
		gc.handBack()
		return nil, false
	}
	if quick {
		gc.l.quick.Add(1)
	}
	r.RemoteAddr = gc.remote
	if r.Body != http.NoBody {
		// The whole request within the read timeout, as the server
		// reads one (the body guard may extend it).
		if gc.read > 0 {
			gc.c.SetReadDeadline(time.Now().Add(gc.read))
		} else {
			gc.c.SetReadDeadline(time.Time{})
		}
		gc.idleSet = time.Time{} // and the body guard may move it
	}
	return r, true
}

// serverWouldTake repeats the checks net/http's server makes of a head
// it read, and the loop's own: only HTTP/1.1, no Expect, no upgrade.
// Whatever fails goes back to the server, to be refused as it refuses.
func serverWouldTake(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Header["Expect"] != nil || r.Header["Upgrade"] != nil {
		return false
	}
	// ReadRequest took the one Host header (more it refuses) into
	// r.Host, unless the target was in absolute form, which browsers
	// never send a server and the server checks its own way.
	if r.URL.Host != "" || r.Host == "" || !httpguts.ValidHostHeader(r.Host) {
		return false
	}
	// The values need no second look: ReadRequest's textproto reader
	// refuses any byte ValidHeaderFieldValue would. Names it takes with a
	// space before the colon (go.dev/issue/34540), which the server
	// refuses.
	for k := range r.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return false
		}
	}
	return true
}

// headBuffered reports whether the whole of the next head is in br.
func headBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	return bytes.Contains(b, []byte("\r\n\r\n"))
}

// serveOne admits and relays one request. false: the connection is not
// to carry another (closed unless handed back).
func (gc *grainConn) serveOne(r *http.Request) bool {
	h := gc.l.h
	if id, ok := h.grainHost(r.Host); !ok || id != gc.id {
		gc.handBack()
		return false
	}
	g, viewer, refused := h.admit(r, gc.id)
	if refused != nil {
		gc.handBack()
		return false
	}
	gc.l.served.Add(1)
	ctx := gc.sessionCtx(viewer)
	if r.Body != http.NoBody {
		h.body.guardConn(r, gc.c.SetReadDeadline)
	}
	rt, release, err := g.Acquire(ctx)
	if err != nil {
		h.log.Warn("grain did not start", "grain", gc.id, "err", err)
		gc.refuse(r, http.StatusBadGateway, "The grain could not start: "+err.Error())
		return false
	}
	defer release()
	rl, ok := rt.(relayer)
	if !ok {
		gc.handBack()
		return false
	}
	return gc.relay(ctx, r, rl, viewer)
}

// sessionCtx is the context requests of viewer's session are cut by:
// one per connection and session (its requests follow one another), so
// that a request costs no context, timer or hook of its own.
func (gc *grainConn) sessionCtx(viewer erg.Viewer) context.Context {
	if gc.sess != nil && gc.sess.Err() == nil && gc.sessOf == viewer.Session && gc.sessEnd.Equal(viewer.Expires) {
		return gc.sess
	}
	if gc.sessStop != nil {
		gc.sessStop()
	}
	gc.sess, gc.sessStop = sessionContext(gc.ctx, viewer)
	gc.sessOf, gc.sessEnd = viewer.Session, viewer.Expires
	return gc.sess
}

// relay rewrites r and has the grain answer it. false: the connection is
// not to carry another request.
func (gc *grainConn) relay(ctx context.Context, r *http.Request, rl relayer, viewer erg.Viewer) bool {
	h := gc.l.h
	rewriteForGrain(r, viewer)
	gc.csp = h.frameAncestors(r)
	var body *countedBody
	if r.Body != http.NoBody {
		body = &countedBody{ReadCloser: r.Body, want: r.ContentLength}
		r.Body = body
	}
	started, err := rl.Relay(ctx, gc.bw, gc.c, r, gc.answer)
	if err != nil && started {
		return false // cut: the client must not take it for whole
	}
	if err != nil {
		code, msg := h.grainFailed(r, gc.id, viewer, err)
		gc.refuse(r, code, msg)
	}
	// A body not read to its end leaves the rest of it where the next
	// request's head would be.
	return !r.Close && (body == nil || body.whole())
}

// refuse answers as http.Error would, and the connection is closed after.
func (gc *grainConn) refuse(r *http.Request, code int, msg string) {
	bw := gc.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(strconv.Itoa(code))
	bw.WriteString(" ")
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\nContent-Length: ")
	bw.WriteString(strconv.Itoa(len(msg) + 1))
	bw.WriteString("\r\n\r\n")
	if r.Method != http.MethodHead {
		bw.WriteString(msg)
		bw.WriteString("\n")
	}
	bw.Flush()
	r.Close = true
}

// handBack gives the connection to net/http with the request it was
// reading unread: what the loop had read of it goes in front.
func (gc *grainConn) handBack() {
	gc.gone = true
	prefix := append(gc.in.pending, gc.in.rec...)
	prefix = append(prefix, gc.in.prefix...)
	gc.c.SetReadDeadline(time.Time{})
	if !gc.l.back.Put(tlsnode.NewPrefixConn(gc.c, prefix)) { // HandedBack's listener was closed
		gc.c.Close()
	}
}

// clientReader is what the loop's buffered reader reads: first what the
// server had read ahead, then the connection. While a head is read it
// bounds it and keeps its bytes, for a head handed back.
type clientReader struct {
	c       io.Reader
	prefix  []byte
	limit   int64 // bytes the head may still take; < 0: no bound
	record  bool
	pending []byte // what was buffered when the head began
	rec     []byte // what was read while it was read
	err     error  // the last read's, since the head began
}

func (cr *clientReader) startHead(br *bufio.Reader, maxHeader int) {
	cr.pending = cr.pending[:0]
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		cr.pending = append(cr.pending, b...)
	}
	cr.rec = cr.rec[:0]
	cr.record = true
	cr.err = nil
	// The server's bound: MaxHeaderBytes and 4 KiB of slack.
	cr.limit = max(int64(maxHeader)+4096-int64(len(cr.pending)), 1)
}

func (cr *clientReader) Read(p []byte) (int, error) {
	if cr.limit == 0 {
		return 0, io.EOF // a head too long: the server will say so
	}
	if cr.limit > 0 && int64(len(p)) > cr.limit {
		p = p[:cr.limit]
	}
	var n int
	var err error
	if len(cr.prefix) > 0 {
		n = copy(p, cr.prefix)
		cr.prefix = cr.prefix[n:]
	} else {
		n, err = cr.c.Read(p)
		if err != nil {
			cr.err = err
		}
	}
	if cr.limit > 0 {
		cr.limit -= int64(n)
	}
	if cr.record {
		cr.rec = append(cr.rec, p[:n]...)
	}
	return n, err
}

// countedBody tells whether a request body was read to its end.
type countedBody struct {
	io.ReadCloser
	want, n int64 // want < 0: until EOF
	eof     bool
}

func (b *countedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	b.eof = b.eof || err == io.EOF
	return n, err
}

func (b *countedBody) whole() bool { return b.eof || b.want >= 0 && b.n == b.want }

// loopAddr is HandedBack's address.
type loopAddr struct{}

func (loopAddr) Network() string { return "grain-loop" }
func (loopAddr) String() string  { return "grain-loop" }
