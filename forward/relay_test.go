package forward

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// relayed sends a request for method and path through Relay and returns
// what the client received, raw.
func relayed(t *testing.T, p *Pool, method, path string) (string, bool, error) {
	t.Helper()
	r, err := http.NewRequest(method, "http://grain"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.RequestURI = path
	var out bytes.Buffer
	started, err := p.Relay(context.Background(), bufio.NewWriter(&out), &out, r, func(h http.Header) { h.Add("X-Added", "1") })
	return out.String(), started, err
}

// Whatever the upstream's framing, the answer on the client's connection
// is framed by Relay: its length, or chunked (with the trailers), or no
// body where none may follow; hop-by-hop headers and values that could
// split the answer stay behind.
func TestRelayFramesTheAnswerItself(t *testing.T) {
	u := newUpstream(t, func(c net.Conn, head string, _ int) bool {
		switch {
		case strings.HasPrefix(head, "GET /length"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\r\nhello")
		case strings.HasPrefix(head, "GET /chunked"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 5\r\n\r\n")
		case strings.HasPrefix(head, "HEAD"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
		case strings.HasPrefix(head, "GET /none"):
			io.WriteString(c, "HTTP/1.1 304 Not Modified\r\nContent-Length: 1000\r\n\r\n")
		case strings.HasPrefix(head, "GET /toend"):
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end")
			return false
		}
		return true
	})
	p := u.pool()
	for _, tc := range []struct {
		method, path string
		want, not    []string
		body         string
	}{
		{"GET", "/length", []string{"HTTP/1.1 200 OK\r\n", "Content-Length: 5\r\n", "X-Added: 1\r\n", "\r\n\r\nhello"}, []string{"X-Hop", "Keep-Alive", "Connection"}, "hello"},
		{"GET", "/chunked", []string{"Transfer-Encoding: chunked\r\n", "Trailer: X-Sum\r\n", "\r\n0\r\nX-Sum: 5\r\n\r\n"}, []string{"Content-Length"}, "abcde"},
		{"HEAD", "/", []string{"Content-Length: 1000\r\n"}, []string{"chunked"}, ""},
		{"GET", "/none", []string{"HTTP/1.1 304 Not Modified\r\n", "Content-Length: 1000\r\n"}, []string{"chunked"}, ""},
		{"GET", "/toend", []string{"Transfer-Encoding: chunked\r\n", "a\r\nto the end\r\n0\r\n\r\n"}, []string{"Connection"}, "to the end"},
	} {
		got, started, err := relayed(t, p, tc.method, tc.path)
		if err != nil || !started {
			t.Errorf("%s %s: started %v, %v", tc.method, tc.path, started, err)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s %s: no %q in %q", tc.method, tc.path, w, got)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("%s %s: %q in %q", tc.method, tc.path, n, got)
			}
		}
		// Each answer is one whole HTTP/1.1 response and nothing after it.
		br := bufio.NewReader(strings.NewReader(got))
		resp, err := http.ReadResponse(br, &http.Request{Method: tc.method})
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
			continue
		}
		if body, _ := io.ReadAll(resp.Body); string(body) != tc.body {
			t.Errorf("%s %s: body %q", tc.method, tc.path, body)
		}
		if rest, _ := io.ReadAll(br); len(rest) > 0 {
			t.Errorf("%s %s: %q after the answer", tc.method, tc.path, rest)
		}
	}
}

// An upstream that cannot answer leaves nothing written: the caller
// answers. One that cuts its answer short says so, started.
func TestRelayErrors(t *testing.T) {
	u := newUpstream(t, func(c net.Conn, head string, _ int) bool {
		if strings.HasPrefix(head, "GET /cut") {
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
		}
		return false
	})
	p := u.pool()
	got, started, err := relayed(t, p, "GET", "/nothing")
	if err == nil || started || got != "" {
		t.Errorf("no answer: %q, started %v, %v", got, started, err)
	}
	got, started, err = relayed(t, p, "GET", "/cut")
	if err == nil || !started {
		t.Errorf("a cut answer: %q, started %v, %v", got, started, err)
	}
}

// An answer longer than spliceMin goes from the upstream's socket to the
// client past cw's buffer: whole, after what the head's read buffered,
// and leaving the upstream's connection ready for the next request. Cut
// short, it says so.
func TestRelayLongAnswer(t *testing.T) {
	long := bytes.Repeat([]byte("0123456789abcdef"), 2*spliceMin/16)
	long = append(long, "tail"...)
	u := newUpstream(t, func(c net.Conn, head string, _ int) bool {
		switch {
		case strings.HasPrefix(head, "GET /long"):
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", len(long))
			c.Write(long)
			return true
		case strings.HasPrefix(head, "GET /cut"):
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 2*len(long))
			c.Write(long)
		}
		return false
	})
	p := u.pool()
	for i := range 2 {
		got, started, err := relayed(t, p, "GET", "/long")
		if err != nil || !started {
			t.Fatalf("answer %d: started %v, %v", i, started, err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), &http.Request{Method: "GET"})
		if err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if body, _ := io.ReadAll(resp.Body); !bytes.Equal(body, long) {
			t.Errorf("answer %d: %d bytes, not the %d sent", i, len(body), len(long))
		}
		if !strings.HasSuffix(got, "tail") {
			t.Errorf("answer %d: more after the body", i)
		}
	}
	if n := u.accepts.Load(); n != 1 {
		t.Errorf("the upstream took %d connections for two answers, not 1", n)
	}
	if _, started, err := relayed(t, p, "GET", "/cut"); err == nil || !started {
		t.Errorf("a long answer cut short: started %v, %v", started, err)
	}
}

// A plain answer's head is read by Heads, not by http.ReadResponse, on
// both of Relay's and Forward's paths, and relayed whole; the answers
// after it on the same connection too.
func TestPlainAnswersAreReadByHeads(t *testing.T) {
	u := newUpstream(t, ok("hello"))
	p := u.pool()
	for i := range 2 {
		got, started, err := relayed(t, p, "GET", "/")
		if err != nil || !started || !strings.HasSuffix(got, "\r\nContent-Length: 5\r\n\r\nhello") || !strings.Contains(got, "\r\nX-App: yes\r\n") {
			t.Fatalf("answer %d: %q, started %v, %v", i, got, started, err)
		}
		if quick := p.idleConn().heads.resp.StatusCode; quick != 200 {
			t.Errorf("answer %d: not read by Heads", i)
		}
	}
	s := front(t, p)
	for i := range 2 {
		if code, body, h := get(t, s.Client(), s.URL); code != 200 || body != "hello" || h.Get("X-App") != "yes" {
			t.Errorf("Forward %d: %d %q %v", i, code, body, h)
		}
	}
	if n := u.accepts.Load(); n != 1 {
		t.Errorf("%d upstream connections", n)
	}
}

// idleConn is the one idle connection (for tests).
func (p *Pool) idleConn() *conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) != 1 {
		panic(fmt.Sprintf("%d idle connections", len(p.idle)))
	}
	return p.idle[0]
}
