package forward

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// Heads reads the plainest HTTP/1.1 heads, which are nearly all of them,
// into one Request or Response and one header map that it keeps for the
// next head: one per connection, since a head read replaces the last
// one. A head is taken only when all of it is in the reader's buffer, its
// lines end in CRLF, it has no folded line, no byte a header may not
// hold or that is not ASCII, and no field whose reading net/http changes
// or checks further (named in plainRequest and plainResponse); then it
// reads as net/http's ReadRequest or ReadResponse reads it (the
// differential tests in head_test.go hold the two side by side).
// Anything else is left unread, for net/http to read.
type Heads struct {
	h http.Header
	// vals backs the values of the kept map: one slot a field. A
	// request's head reuses it (its Request is gone by the next head); an
	// answer's reuses it only when asked (Relay writes the answer out
	// before the next; Forward hands the values to a ResponseWriter that
	// may keep them).
	vals []string
	url  url.URL
	req  http.Request
	resp http.Response
	body lengthBody
}

// Request reads a request head without a body from br. The Request is
// the one Heads keeps, valid until the next head is read; its Body is
// http.NoBody. false: br is as it was, and http.ReadRequest should read
// it.
func (hs *Heads) Request(br *bufio.Reader) (*http.Request, bool) {
	b, n := wholeHead(br)
	if n < 0 {
		return nil, false
	}
	// One string holds the head; the fields are its substrings.
	line, rest, _ := strings.Cut(string(b[:n]), "\r\n")
	method, target, ok := requestLine(line)
	if !ok {
		return nil, false
	}
	h := hs.header()
	var host string
	hosts := 0
	if !hs.fields(rest, true, func(key, value string) bool {
		switch key {
		case "Content-Length", "Transfer-Encoding", "Trailer", "Pragma":
			// A body's framing, and the fields net/http rewrites.
			return false
		case "Host":
			host = value
			hosts++
			return hosts == 1
		}
		return true
	}) {
		return nil, false
	}
	// As ReadRequest: the Host field moves to Host.
	delete(h, "Host")
	path, query, forceQuery := splitTarget(target)
	hs.url = url.URL{Path: path, RawQuery: query, ForceQuery: forceQuery}
	hs.req = http.Request{
		Method:     method,
		URL:        &hs.url,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     h,
		Body:       http.NoBody,
		Host:       host,
		RequestURI: target,
		Close:      httpguts.HeaderValuesContainsToken(h["Connection"], "close"),
	}
	br.Discard(n)
	return &hs.req, true
}

// response reads the head of an answer to a request of method whose body
// has a length given once (not a HEAD's, a 204's or a 304's, and not
// chunked) from br. The Response and its Body are the ones Heads keeps.
// false: br is as it was, for http.ReadResponse.
func (hs *Heads) response(br *bufio.Reader, method string, reuse bool) (*http.Response, bool) {
	if method == http.MethodHead {
		return nil, false
	}
	b, n := wholeHead(br)
	if n < 0 {
		return nil, false
	}
	line, rest, _ := strings.Cut(string(b[:n]), "\r\n")
	code, ok := statusLine(line)
	if !ok {
		return nil, false
	}
	h := hs.header()
	length := int64(-1)
	if !hs.fields(rest, reuse, func(key, value string) bool {
		switch key {
		case "Content-Length":
			if length >= 0 || value == "" || strings.Trim(value, "0123456789") != "" {
				return false
			}
			l, err := strconv.ParseInt(value, 10, 64)
			length = l
			return err == nil
		case "Transfer-Encoding", "Trailer", "Pragma", "Connection":
			return false
		}
		return true
	}) || length < 0 {
		return nil, false
	}
	resp := &hs.resp
	*resp = http.Response{
		Status:        line[9:],
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: length,
		Body:          http.NoBody,
	}
	br.Discard(n)
	if length > 0 {
		hs.body = lengthBody{br: br, n: length}
		resp.Body = &hs.body
	}
	return resp, true
}

// header is the kept map, emptied.
func (hs *Heads) header() http.Header {
	if hs.h == nil {
		hs.h = make(http.Header, 16)
	}
	clear(hs.h)
	return hs.h
}

// wholeHead returns br's buffer and the length of the head at its start,
// blank line included, when the whole head is there and every line in it
// ends in CRLF; else -1.
func wholeHead(br *bufio.Reader) ([]byte, int) {
	b, _ := br.Peek(br.Buffered())
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, -1
	}
	end += 4
	for i, c := range b[:end] {
		if headByte[c] {
			continue
		}
		switch {
		case c == '\n' && (i == 0 || b[i-1] != '\r'), c == '\r' && b[i+1] != '\n':
			return nil, -1 // a bare LF or CR: lines net/http would cut otherwise
		case c != '\r' && c != '\n':
			return nil, -1 // a control byte, or not ASCII
		}
	}
	return b, end
}

// fields reads the header lines of s (each ending in CRLF, the blank line
// not included) into the kept map, asking take of each; false at the
// first field it refuses or that net/http would read otherwise. reuse:
// the values may go in the array the last head's did.
func (hs *Heads) fields(s string, reuse bool, take func(key, value string) bool) bool {
	h := hs.h
	// One array for the values, a slot each, as textproto does.
	n := strings.Count(s, "\r\n")
	var vals []string
	switch {
	case !reuse:
		vals = make([]string, n) // not kept: a later head must not write where these went
	case cap(hs.vals) >= n:
		vals = hs.vals[:n]
	default:
		hs.vals = make([]string, n)
		vals = hs.vals
	}
	for s != "" {
		line, rest, _ := strings.Cut(s, "\r\n")
		s = rest
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || !token(name) {
			return false // also a folded line, which starts with a space
		}
		value = strings.Trim(value, " \t")
		key := name
		if !canonical(name) {
			key = textproto.CanonicalMIMEHeaderKey(name)
		}
		if !take(key, value) {
			return false
		}
		if vv := h[key]; vv != nil {
			h[key] = append(vv, value)
			continue
		}
		vals[0] = value
		h[key], vals = vals[:1:1], vals[1:]
	}
	return true
}

// requestLine reads "METHOD /target HTTP/1.1" where the target is a path
// and query of the plainest kind (plainTarget).
func requestLine(line string) (method, target string, ok bool) {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" || !token(method) || !plainTarget(target) ||
		method == "CONNECT" || method == "PRI" {
		return "", "", false
	}
	return method, target, true
}

// plainTarget reports whether t is an origin-form target whose path
// net/url takes as it is: only characters it leaves unescaped, no
// escapes, not starting "//"; the query may hold any visible character
// but '#'.
func plainTarget(t string) bool {
	if len(t) == 0 || t[0] != '/' || len(t) > 1 && t[1] == '/' {
		return false
	}
	inQuery := false
	for i := 0; i < len(t); i++ {
		switch c := t[i]; {
		case c == '?':
			inQuery = true
		case c == '#' || c <= ' ' || c >= 0x7f:
			return false
		case !inQuery && !pathByte[c]:
			return false
		}
	}
	return true
}

// splitTarget is url.ParseRequestURI's reading of a plain target.
func splitTarget(t string) (path, query string, forceQuery bool) {
	if strings.HasSuffix(t, "?") && strings.Count(t, "?") == 1 {
		return t[:len(t)-1], "", true
	}
	path, query, _ = strings.Cut(t, "?")
	return path, query, false
}

// statusLine reads "HTTP/1.1 ddd reason" with a final code, 200 to 599,
// of an answer that has a body.
func statusLine(line string) (int, bool) {
	if len(line) < 12 || line[:9] != "HTTP/1.1 " || len(line) > 12 && line[12] != ' ' {
		return 0, false
	}
	code := 0
	for _, c := range []byte(line[9:12]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		code = code*10 + int(c-'0')
	}
	if code < 200 || code > 599 || code == http.StatusNoContent || code == http.StatusNotModified {
		return 0, false
	}
	return code, true
}

// token reports whether s is a non-empty HTTP token (a field name, a
// method).
func token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// The bytes a head may hold on a line (visible ASCII, space, tab), a
// token, and a path net/url takes as it is.
var headByte, tokenByte, pathByte = byteSets()

func byteSets() (head, token, path [256]bool) {
	for c := 0; c < 256; c++ {
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		head[c] = c == '\t' || ' ' <= c && c < 0x7f
		token[c] = alnum || strings.IndexByte("!#$%&'*+-.^_`|~", byte(c)) >= 0
		path[c] = alnum || strings.IndexByte("-._~$&+,/:;=@", byte(c)) >= 0
	}
	return head, token, path
}

// canonical reports whether a token is in textproto's canonical form
// already (as browsers and Go send most names), so that it needs no copy.
func canonical(s string) bool {
	upper := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if upper && 'a' <= c && c <= 'z' || !upper && 'A' <= c && c <= 'Z' {
			return false
		}
		upper = c == '-'
	}
	return true
}

// lengthBody is an answer's body of known length on an upstream
// connection. Cut short, it says so (io.ErrUnexpectedEOF), so that a
// truncated answer never passes for whole.
type lengthBody struct {
	br *bufio.Reader
	n  int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.br.Read(p)
	b.n -= int64(n)
	if err == io.EOF && b.n > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (b *lengthBody) Close() error { return nil }
