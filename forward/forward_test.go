package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is a raw HTTP/1.1 server the test scripts: it records every
// request head it reads and answers each with answer.
type upstream struct {
	t       testing.TB
	ln      net.Listener
	accepts atomic.Int32
	mu      sync.Mutex
	heads   []string // request heads, in order
	bodies  []string
	answer  func(c net.Conn, head string, n int) bool // false: close the connection
}

func newUpstream(t testing.TB, answer func(c net.Conn, head string, n int) bool) *upstream {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{t: t, ln: ln, answer: answer}
	t.Cleanup(func() { ln.Close() })
	go u.serve()
	return u
}

func (u *upstream) serve() {
	for {
		c, err := u.ln.Accept()
		if err != nil {
			return
		}
		u.accepts.Add(1)
		go u.conn(c)
	}
}

func (u *upstream) conn(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		var head bytes.Buffer
		fmt.Fprintf(&head, "%s %s", req.Method, req.RequestURI)
		for k, vs := range req.Header {
			for _, v := range vs {
				fmt.Fprintf(&head, "\n%s: %s", k, v)
			}
		}
		body, err := io.ReadAll(req.Body)
		u.mu.Lock()
		u.heads = append(u.heads, head.String())
		u.bodies = append(u.bodies, string(body))
		n := len(u.heads)
		u.mu.Unlock()
		if err != nil {
			return
		}
		if !u.answer(c, head.String(), n) {
			return
		}
	}
}

func (u *upstream) requests() ([]string, []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.heads...), append([]string(nil), u.bodies...)
}

func (u *upstream) pool() *Pool {
	p := New(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", u.ln.Addr().String())
	})
	u.t.Cleanup(p.Close)
	return p
}

func ok(body string) func(net.Conn, string, int) bool {
	return func(c net.Conn, _ string, _ int) bool {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nX-App: yes\r\n\r\n%s", len(body), body)
		return true
	}
}

// front serves p through a real net/http server, as the node does.
func front(t testing.TB, p *Pool) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Set("X-Identity", "alice") // what the node's rewrite does
		err := p.Forward(r.Context(), w, r, func(h http.Header) { h.Add("X-Added", "1") })
		if err != nil {
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestForwardReusesOneConnection(t *testing.T) {
	u := newUpstream(t, ok("hello"))
	s := front(t, u.pool())
	for i := range 20 {
		code, body, h := get(t, s.Client(), s.URL+"/x?i="+strconv.Itoa(i))
		if code != 200 || body != "hello" || h.Get("X-App") != "yes" || h.Get("X-Added") != "1" {
			t.Fatalf("%d %q %v", code, body, h)
		}
	}
	if n := u.accepts.Load(); n != 1 {
		t.Errorf("%d connections to the upstream for 20 sequential requests", n)
	}
	// The pool reads and writes its TCP connection with raw calls.
	p := u.pool()
	s2 := front(t, p)
	get(t, s2.Client(), s2.URL+"/y")
	p.mu.Lock()
	if len(p.idle) != 1 || p.idle[0].sock == nil {
		t.Errorf("the pooled connection is read through a Socket: %v", len(p.idle) == 1 && p.idle[0].sock != nil)
	}
	p.mu.Unlock()
	heads, _ := u.requests()
	if !strings.HasPrefix(heads[3], "GET /x?i=3") || !strings.Contains(heads[3], "X-Identity: alice") {
		t.Errorf("upstream got %q", heads[3])
	}
}

func TestForwardDropsHopByHopHeaders(t *testing.T) {
	u := newUpstream(t, func(c net.Conn, _ string, _ int) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\n\r\nok")
		return true
	})
	s := front(t, u.pool())
	req, _ := http.NewRequest("GET", s.URL+"/", nil)
	req.Header.Set("Connection", "X-Private")
	req.Header.Set("X-Private", "p")
	req.Header.Set("Te", "gzip")
	req.Header.Set("Expect", "100-continue")
	req.Header.Set("Proxy-Authorization", "Basic x")
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" {
		t.Errorf("hop-by-hop answer headers reached the client: %v", resp.Header)
	}
	heads, _ := u.requests()
	for _, h := range []string{"X-Private", "Te:", "Expect", "Proxy-Authorization", "Connection"} {
		if strings.Contains(heads[0], h) {
			t.Errorf("upstream got %s: %q", h, heads[0])
		}
	}
}

// A connection the upstream closed while idle is found out and a GET
// tried again on a new one; the client never sees it.
func TestForwardRetriesAStaleIdleConnection(t *testing.T) {
	u := newUpstream(t, func(c net.Conn, _ string, _ int) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return false // close right after answering, without saying so
	})
	p := u.pool()
	s := front(t, p)
	for range 3 {
		if code, body, _ := get(t, s.Client(), s.URL+"/"); code != 200 || body != "ok" {
			t.Fatalf("%d %q", code, body)
		}
		time.Sleep(20 * time.Millisecond) // let the close arrive
	}
	if n := u.accepts.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests on connections closed after each", n)
	}
}

// A POST is not sent twice on a guess: when its idle connection turns
// out closed before any answer, the client gets 502.
func TestForwardDoesNotRetryAPost(t *testing.T) {
	var first atomic.Bool
	u := newUpstream(t, func(c net.Conn, _ string, n int) bool {
		if first.CompareAndSwap(false, true) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			return true
		}
		return false // read the POST, then hang up without an answer
	})
	s := front(t, u.pool())
	get(t, s.Client(), s.URL+"/")
	resp, err := s.Client().Post(s.URL+"/act", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("POST after a hang-up: %d", resp.StatusCode)
	}
	if heads, _ := u.requests(); len(heads) != 2 {
		t.Errorf("the upstream saw %d requests, want the POST once: %q", len(heads), heads)
	}
}

// A request body that fails half way (the client gone) leaves its
// connection out of the pool: the next request must not land in the
// middle of the cut body.
func TestForwardBodyErrorDropsTheConnection(t *testing.T) {
	u := newUpstream(t, ok("done"))
	p := u.pool()
	s := front(t, p)
	c, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("a", 1000))
	time.Sleep(50 * time.Millisecond)
	c.Close()
	// The upstream read the head and part of the body; wait for the node
	// to give up on it.
	waitFor(t, func() bool { return p.Idle() == 0 && u.accepts.Load() >= 1 })
	for range 3 {
		if code, body, _ := get(t, s.Client(), s.URL+"/after"); code != 200 || body != "done" {
			t.Fatalf("after a cut body: %d %q", code, body)
		}
	}
	heads, _ := u.requests()
	for _, h := range heads {
		if !strings.HasPrefix(h, "GET /after") {
			t.Errorf("upstream read a request it should not have: %q", h)
		}
	}
	if n := u.accepts.Load(); n != 2 {
		t.Errorf("%d upstream connections, want the cut one and one for the rest", n)
	}
}

// An answer cut short aborts the client's connection (no truncated body
// that looks whole) and its upstream connection is not reused.
func TestForwardCutAnswerAbortsTheClient(t *testing.T) {
	u := newUpstream(t, func(c net.Conn, head string, n int) bool {
		if strings.HasPrefix(head, "GET /cut") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly some")
			return false
		}
		if strings.HasPrefix(head, "GET /chunks") {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsome\r\n")
			return false
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	s := front(t, u.pool())
	for _, path := range []string{"/cut", "/chunks"} {
		resp, err := s.Client().Get(s.URL + path)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Errorf("%s: a cut answer reached the client as whole", path)
		}
		if code, body, _ := get(t, s.Client(), s.URL+"/"); code != 200 || body != "ok" {
			t.Fatalf("after %s: %d %q", path, code, body)
		}
	}
}

// Smuggling: the server in front frames each request once and Forward
// frames it again, so the upstream reads exactly the requests the front
// handled (each rewritten), however a client tries to hide one in another.
func TestForwardSmuggling(t *testing.T) {
	u := newUpstream(t, ok("ok"))
	p := u.pool()
	var mu sync.Mutex
	var handled []string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		handled = append(handled, r.Method+" "+r.RequestURI)
		mu.Unlock()
		r.Header.Set("X-Identity", "alice")
		if err := p.Forward(r.Context(), w, r, nil); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	defer s.Close()
	attacks := []string{
		// CL and TE together.
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		// Two Content-Lengths.
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 38\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
		// A header line folded over two lines.
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
		// A bare LF inside a header value, and a NUL.
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\nGET /smuggled HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
		// A space before the colon.
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
		// An obsolete transfer coding.
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
	}
	for _, a := range attacks {
		c, err := net.Dial("tcp", s.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		io.WriteString(c, a)
		io.Copy(io.Discard, c) // the server answers (400, or 200 once) and closes or times out
		c.Close()
	}
	// A chunked body whose chunk holds a request: sent upstream as the
	// body, framed again, never as a request.
	body := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	req, _ := http.NewRequest("POST", s.URL+"/chunked", io.NopCloser(strings.NewReader(body)))
	req.ContentLength = -1
	resp, err := s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	heads, bodies := u.requests()
	mu.Lock()
	defer mu.Unlock()
	if len(heads) != len(handled) {
		t.Fatalf("the front handled %q, the upstream read %q", handled, heads)
	}
	for i, h := range heads {
		if line, _, _ := strings.Cut(h, "\n"); line != handled[i] || !strings.Contains(h, "X-Identity: alice") {
			t.Errorf("request %d: the front handled %q, the upstream read %q", i, handled[i], h)
		}
		if strings.HasPrefix(h, "POST /chunked") && bodies[i] != body {
			t.Errorf("chunked body arrived as %q", bodies[i])
		}
	}
}

// Bad input the server in front would never pass is refused here too,
// before a byte goes upstream.
func TestWriteHeadRefusesWhatCouldSplitARequest(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(r *http.Request)
	}{
		{"CRLF in a value", func(r *http.Request) { r.Header.Set("X-A", "a\r\nX-Erg-Username: mallory") }},
		{"LF in a value", func(r *http.Request) { r.Header["X-A"] = []string{"a\nb"} }},
		{"bad name", func(r *http.Request) { r.Header["X A"] = []string{"a"} }},
		{"bad host", func(r *http.Request) { r.Host = "x\r\nX-Erg-Username: mallory" }},
		{"bad method", func(r *http.Request) { r.Method = "GET /x HTTP/1.1\r\n" }},
	} {
		r := httptest.NewRequest("GET", "http://x/", nil)
		tt.mod(r)
		var b bytes.Buffer
		bw := bufio.NewWriter(&b)
		if err := writeHead(bw, r, "/", false); err == nil {
			t.Errorf("%s: written", tt.name)
		}
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RequestURI = "/a b"
	if _, err := requestTarget(r); err == nil {
		t.Error("a target with a space passed")
	}
}

// Pipelined requests on one client connection are each forwarded and
// answered in order.
func TestForwardPipelining(t *testing.T) {
	u := newUpstream(t, func(c net.Conn, head string, _ int) bool {
		path := strings.Fields(head)[1]
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(path), path)
		return true
	})
	s := front(t, u.pool())
	c, err := net.Dial("tcp", s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var all strings.Builder
	for i := range 5 {
		fmt.Fprintf(&all, "GET /p%d HTTP/1.1\r\nHost: x\r\n\r\n", i)
	}
	all.WriteString("POST /p5 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
	io.WriteString(c, all.String())
	br := bufio.NewReader(c)
	for i := range 6 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		if want := fmt.Sprintf("/p%d", i); string(b) != want {
			t.Errorf("answer %d: %q, want %q", i, b, want)
		}
	}
	_, bodies := u.requests()
	if len(bodies) != 6 || bodies[5] != "abc" {
		t.Errorf("bodies %q", bodies)
	}
}

// The request's context ending cuts a hanging upstream at once, and
// its connection is not pooled.
func TestForwardContextCutsTheExchange(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	u := newUpstream(t, func(c net.Conn, _ string, _ int) bool {
		<-release
		return false
	})
	p := u.pool()
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequest("GET", "http://x/", nil)
	errc := make(chan error, 1)
	go func() { errc <- p.Forward(ctx, httptest.NewRecorder(), r, nil) }()
	waitFor(t, func() bool { h, _ := u.requests(); return len(h) == 1 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Forward = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the context's end did not cut the exchange")
	}
	if p.Idle() != 0 {
		t.Error("a cut connection went back to the pool")
	}
}

// An upstream that sends more than its answer does not get the extra
// read as the next request's answer.
func TestForwardDoesNotPoolAConnectionWithExtraBytes(t *testing.T) {
	u := newUpstream(t, func(c net.Conn, head string, _ int) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
		return true
	})
	s := front(t, u.pool())
	for range 3 {
		if code, body, _ := get(t, s.Client(), s.URL+"/"); code != 200 || body != "ok" {
			t.Fatalf("%d %q", code, body)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
