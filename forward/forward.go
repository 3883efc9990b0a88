package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"
)

// spliceMin is the shortest rest of an answer worth splicing from the
// upstream's socket to the client's rather than copying through a buffer.
const spliceMin = 64 << 10

// Forward sends r to the upstream and copies its answer to w, on the
// calling goroutine (a request body is written by a second one, as the
// upstream may answer before reading all of it). r's header goes as it
// is but for the hop-by-hop headers and Expect (the server in front
// already speaks 100-continue with the client); answer, if not nil, may
// add to the answer's header before it is written.
//
// An error means nothing was written to w, and the caller answers. Once
// the answer has begun, a failure aborts the client's connection with
// panic(http.ErrAbortHandler), as net/http's ReverseProxy does, so that a
// cut answer never looks whole. The end of ctx cuts the exchange.
// Upgrades are not forwarded here (Upgrade is hop-by-hop; see RoundTrip).
func (p *Pool) Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, answer func(http.Header)) error {
	ex, resp, err := p.open(ctx, r, false)
	if err != nil {
		return err
	}
	ex.answer(w, resp, answer)
	return nil
}

// open sends r on a pooled connection and reads the answer's head. relay:
// the answer is written out before the connection's next (Relay), so its
// header's values may go where the last answer's did.
func (p *Pool) open(ctx context.Context, r *http.Request, relay bool) (exchange, *http.Response, error) {
	target, err := requestTarget(r)
	if err != nil {
		return exchange{}, nil, err
	}
	hasBody := r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody
	for {
		c, reused, err := p.get(ctx)
		if err != nil {
			return exchange{}, nil, err
		}
		ex := exchange{p: p, c: c, r: r, ctx: ctx, relaying: relay}
		resp, err := ex.send(target, hasBody)
		if err != nil {
			ex.end(false)
			// An idle connection the upstream closed meanwhile: try a new
			// one, when the upstream cannot have acted on the request (it
			// was not all written) or acting twice does no harm.
			var st staleError
			if reused && !hasBody && errors.As(err, &st) && (st.write || idempotent(r.Method)) && ctx.Err() == nil {
				continue
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return exchange{}, nil, ctxErr
			}
			return exchange{}, nil, err
		}
		return ex, resp, nil
	}
}

// exchange is one request and answer on one connection.
type exchange struct {
	p        *Pool
	c        *conn
	r        *http.Request
	ctx      context.Context
	stop     func() bool // undoes the context's hook on the connection
	body     chan error  // the request body's writer, when there is one
	relaying bool        // Relay's: see open
}

// send writes the request (its body from a goroutine of its own) and
// reads the answer's head.
func (ex *exchange) send(target string, hasBody bool) (*http.Response, error) {
	c := ex.c
	// The request's end (the client gone, the session dropped) cuts the
	// connection; no goroutine waits for it.
	ex.stop = context.AfterFunc(ex.ctx, c.cut)
	if err := writeHead(c.bw, ex.r, target, hasBody); err != nil {
		return nil, err
	}
	if hasBody {
		body, r := make(chan error, 1), ex.r // not ex: it stays on its caller's stack
		go func() { body <- writeBody(c, r) }()
		ex.body = body
	} else if err := c.bw.Flush(); err != nil {
		return nil, staleOr(err, true)
	}
	// Nothing at all back (not one byte) is how a connection the
	// upstream closed while idle answers.
	if _, err := c.br.Peek(1); err != nil {
		return nil, staleOr(err, false)
	}
	if resp, ok := c.heads.response(c.br, ex.r.Method, ex.relaying); ok {
		return resp, nil
	}
	for {
		resp, err := http.ReadResponse(c.br, ex.r)
		if err != nil {
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusSwitchingProtocols:
			return nil, errors.New("forward: the upstream switched protocols unasked")
		case resp.StatusCode < 200:
			continue // 100 Continue, 103 Early Hints: the final answer follows
		}
		return resp, nil
	}
}

// end finishes with the connection: back to the pool if clean and all of
// the request was written, else closed. It waits for the body's writer.
func (ex *exchange) end(clean bool) {
	if ex.stop != nil && !ex.stop() {
		clean = false // the context's end already cut the connection
	}
	if ex.body != nil {
		if clean {
			// An answer that came before all of the body was taken (a
			// refusal, say) leaves the connection in the middle of it.
			select {
			case err := <-ex.body:
				clean = err == nil
				ex.body = nil
			default:
				clean = false
			}
		}
		if ex.body != nil {
			ex.c.nc.Close() // unblocks the body's writer
			<-ex.body
		}
	}
	// Bytes the upstream sent past its answer would be read as the next
	// request's answer.
	if clean && ex.c.br.Buffered() == 0 {
		ex.p.put(ex.c)
	} else {
		ex.c.nc.Close()
	}
}

// answer copies resp to w and ends the exchange.
func (ex *exchange) answer(w http.ResponseWriter, resp *http.Response, add func(http.Header)) {
	h := w.Header()
	copyHeader(h, resp.Header)
	if len(resp.Trailer) > 0 {
		for k := range resp.Trailer {
			h.Add("Trailer", k)
		}
	}
	if add != nil {
		add(h)
	}
	w.WriteHeader(resp.StatusCode)
	clean, err := ex.copyBody(w, resp)
	if err == nil {
		for k, vs := range resp.Trailer {
			h[http.TrailerPrefix+k] = vs
		}
	}
	ex.end(clean && err == nil && !resp.Close)
	if err != nil {
		panic(http.ErrAbortHandler)
	}
}

// copyBody streams the answer's body to w. clean says the body was read
// to its end, so the connection is ready for the next request.
func (ex *exchange) copyBody(w http.ResponseWriter, resp *http.Response) (clean bool, err error) {
	if resp.Body == http.NoBody {
		return true, nil
	}
	c := ex.c
	if rest := resp.ContentLength - int64(c.br.Buffered()); rest >= spliceMin {
		if _, ok := w.(io.ReaderFrom); ok {
			// What the head's read already buffered, then the rest
			// straight from the socket.
			head, _ := c.br.Peek(c.br.Buffered())
			if _, err := w.Write(head); err != nil {
				return false, err
			}
			c.br.Discard(len(head))
			return c.copyRest(w, rest)
		}
	}
	// An answer of unknown length (chunked, or to the connection's end)
	// or an event stream goes to the client as it comes.
	flush := resp.ContentLength < 0 || strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream")
	var flusher http.Flusher
	if flush {
		flusher, _ = w.(http.Flusher)
	}
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, err := w.Write(buf[:n]); err != nil {
				return false, err
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr == io.EOF {
			return true, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

var aLongTimeAgo = time.Unix(1, 0)

// staleError is what a request on a connection the upstream had already
// closed meets: writing it failed (write), or not one byte came back.
type staleError struct {
	err   error
	write bool
}

func (e staleError) Error() string { return e.err.Error() }
func (e staleError) Unwrap() error { return e.err }

// staleOr marks err as a stale connection's when it is one.
func staleOr(err error, write bool) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return staleError{err, write}
	}
	return err
}

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// requestTarget is the request-target to send: the origin form the
// client sent, or the path of an absolute one.
func requestTarget(r *http.Request) (string, error) {
	t := r.RequestURI
	if t == "" || r.URL.Scheme != "" || r.URL.Host != "" {
		t = r.URL.RequestURI()
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] == 0x7f {
			return "", fmt.Errorf("forward: bad request target %q", t)
		}
	}
	return t, nil
}

// writeHead writes the request line and header, framing the body by
// Content-Length when its length is known and else chunked.
func writeHead(bw *bufio.Writer, r *http.Request, target string, hasBody bool) error {
	if !httpguts.ValidHostHeader(r.Host) || !validMethod(r.Method) {
		return fmt.Errorf("forward: bad method %q or host %q", r.Method, r.Host)
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(target)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	conn := r.Header["Connection"]
	for k, vs := range r.Header {
		if hopByHop(k, conn) || k == "Expect" || k == "Content-Length" || k == "Host" {
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("forward: bad header name %q", k)
		}
		for _, v := range vs {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("forward: bad value for header %s", k)
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(v)
			bw.WriteString("\r\n")
		}
	}
	switch {
	case hasBody && r.ContentLength > 0:
		bw.WriteString("Content-Length: ")
		bw.WriteString(strconv.FormatInt(r.ContentLength, 10))
		bw.WriteString("\r\n")
	case hasBody:
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n")
	}
	_, err := bw.WriteString("\r\n")
	return err
}

// writeBody writes r's body (length-framed or chunked, as writeHead
// said) and flushes it. A failure closes the connection, so that the
// answer's reader stops waiting.
func writeBody(c *conn, r *http.Request) (err error) {
	defer func() {
		if err != nil {
			c.nc.Close()
		}
	}()
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	buf := *bp
	if r.ContentLength > 0 {
		n, err := io.CopyBuffer(writerOnly{c.bw}, io.LimitReader(r.Body, r.ContentLength), buf)
		if err == nil && n < r.ContentLength {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		return c.bw.Flush()
	}
	cw := chunkedWriter{c.bw}
	if _, err := io.CopyBuffer(cw, r.Body, buf); err != nil {
		return err
	}
	c.bw.WriteString("0\r\n\r\n")
	return c.bw.Flush()
}

// writerOnly hides a ReadFrom, so that io.CopyBuffer uses its buffer.
type writerOnly struct{ io.Writer }

// chunkedWriter frames each write as one chunk and flushes it, so the
// body streams as it comes.
type chunkedWriter struct{ bw *bufio.Writer }

func (cw chunkedWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	cw.bw.WriteString(strconv.FormatInt(int64(len(p)), 16))
	cw.bw.WriteString("\r\n")
	cw.bw.Write(p)
	cw.bw.WriteString("\r\n")
	if err := cw.bw.Flush(); err != nil {
		return 0, err
	}
	return len(p), nil
}

// hopByHop reports whether header k belongs to one connection only: the
// standard ones and any the Connection header names.
func hopByHop(k string, conn []string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	for _, v := range conn {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), k) {
				return true
			}
		}
	}
	return false
}

// copyHeader adds the answer's end-to-end headers to dst.
func copyHeader(dst, src http.Header) {
	conn := src["Connection"]
	for k, vs := range src {
		if hopByHop(k, conn) {
			continue
		}
		if dst[k] == nil {
			dst[k] = vs // the answer's own slice: no copy
		} else {
			dst[k] = append(dst[k], vs...)
		}
	}
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if !httpguts.IsTokenRune(rune(m[i])) {
			return false
		}
	}
	return true
}

// copyRest copies the last rest bytes of an answer's body, past what c's
// reader buffered, from c's socket to dst: splice(2) where dst is a TCP
// socket or passes its ReadFrom on. true: the body was read to its end.
func (c *conn) copyRest(dst io.Writer, rest int64) (bool, error) {
	n, err := io.Copy(dst, &io.LimitedReader{R: c.nc, N: rest})
	if err == nil && n < rest {
		err = io.ErrUnexpectedEOF
	}
	return err == nil, err
}
