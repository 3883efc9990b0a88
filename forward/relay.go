package forward

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"

	"golang.org/x/net/http/httpguts"
)

// Relay is Forward for a caller that speaks HTTP/1.1 to its client
// itself, on a connection taken out of net/http's server: the answer is
// written onto cw as an HTTP/1.1 response framed by this side (its
// length, or chunked when the upstream did not say it), and the rest of a
// long answer of known length goes from the upstream's socket straight
// into client, the connection under cw (splice(2) between two sockets).
// answer, if not nil, may add to the answer's header before it is
// written.
//
// Whatever the upstream's framing was, the client's connection can carry
// another request after a nil error. An error with started false means
// nothing was written to cw and the caller answers; with started true the
// answer was cut, and the caller must close the client's connection so
// that it never looks whole. The end of ctx cuts the exchange.
func (p *Pool) Relay(ctx context.Context, cw *bufio.Writer, client io.Writer, r *http.Request, answer func(http.Header)) (started bool, err error) {
	ex, resp, err := p.open(ctx, r, true)
	if err != nil {
		return false, err
	}
	clean, err := ex.relay(cw, client, resp, answer)
	ex.end(clean && err == nil && !resp.Close)
	return true, err
}

// relay writes resp onto cw. clean says its body was read to its end.
func (ex *exchange) relay(cw *bufio.Writer, client io.Writer, resp *http.Response, add func(http.Header)) (clean bool, err error) {
	h := resp.Header
	if add != nil {
		add(h)
	}
	code := resp.StatusCode
	cw.WriteString("HTTP/1.1 ")
	// Numbers are written into cw's own buffer (AvailableBuffer): no
	// array of ours escapes through Write.
	cw.Write(strconv.AppendInt(cw.AvailableBuffer(), int64(code), 10))
	cw.WriteByte(' ')
	cw.WriteString(http.StatusText(code))
	cw.WriteString("\r\n")
	conn := h["Connection"]
	for k, vs := range h {
		if hopByHop(k, conn) || k == "Content-Length" {
			continue
		}
		writeField(cw, k, vs)
	}
	// No body follows these, whatever their header says: the length a
	// HEAD's or a 304's header gives is the resource's, passed on.
	bodyless := ex.r.Method == http.MethodHead || code == http.StatusNoContent || code == http.StatusNotModified
	switch {
	case bodyless:
		if code != http.StatusNoContent {
			for _, v := range h["Content-Length"] {
				if _, err := strconv.ParseUint(v, 10, 63); err == nil {
					writeField(cw, "Content-Length", []string{v})
					break
				}
			}
		}
	case resp.ContentLength >= 0:
		cw.WriteString("Content-Length: ")
		cw.Write(strconv.AppendInt(cw.AvailableBuffer(), resp.ContentLength, 10))
		cw.WriteString("\r\n")
	default:
		cw.WriteString("Transfer-Encoding: chunked\r\n")
		first := true
		for k := range resp.Trailer {
			if !httpguts.ValidHeaderFieldName(k) {
				continue
			}
			if first {
				cw.WriteString("Trailer: ")
			} else {
				cw.WriteString(", ")
			}
			cw.WriteString(k)
			first = false
		}
		if !first {
			cw.WriteString("\r\n")
		}
	}
	cw.WriteString("\r\n")
	switch {
	case bodyless:
		return resp.Body == http.NoBody, cw.Flush()
	case resp.ContentLength >= 0:
		return ex.relayLength(cw, client, resp)
	}
	return ex.relayChunked(cw, resp)
}

// writeField writes one header field, leaving out values that could
// split the answer (the upstream is not trusted).
func writeField(cw *bufio.Writer, k string, vs []string) {
	if !httpguts.ValidHeaderFieldName(k) {
		return
	}
	for _, v := range vs {
		if !httpguts.ValidHeaderFieldValue(v) {
			continue
		}
		cw.WriteString(k)
		cw.WriteString(": ")
		cw.WriteString(v)
		cw.WriteString("\r\n")
	}
}

// relayLength copies a body of known length: a short one through cw's
// buffer with the head (one write), a long one spliced.
func (ex *exchange) relayLength(cw *bufio.Writer, client io.Writer, resp *http.Response) (bool, error) {
	c := ex.c
	if rest := resp.ContentLength - int64(c.br.Buffered()); rest >= spliceMin {
		head, _ := c.br.Peek(c.br.Buffered())
		cw.Write(head)
		c.br.Discard(len(head))
		if err := cw.Flush(); err != nil {
			return false, err
		}
		return c.copyRest(client, rest)
	}
	if _, err := io.Copy(cw, resp.Body); err != nil {
		return false, err
	}
	return true, cw.Flush()
}

// relayChunked sends a body of unknown length chunked, each piece as it
// comes (an event stream must not wait for a buffer to fill), then the
// upstream's trailers.
func (ex *exchange) relayChunked(cw *bufio.Writer, resp *http.Response) (bool, error) {
	bp := buffers.Get().(*[]byte)
	defer buffers.Put(bp)
	if _, err := io.CopyBuffer(chunkedWriter{cw}, resp.Body, *bp); err != nil {
		return false, err
	}
	cw.WriteString("0\r\n")
	for k, vs := range resp.Trailer {
		writeField(cw, k, vs)
	}
	cw.WriteString("\r\n")
	return true, cw.Flush()
}
