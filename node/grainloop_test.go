package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"erg/internal/testkit"
)

// The grain loop (webui/grainconn.go) serves a grain connection's
// requests after its first outside net/http. These tests speak raw
// HTTP/1.1 on one connection, as a browser's keep-alive one or an
// attacker's would, and try to get past the checks the loop makes of
// every request.

// rawConn is one client connection to the node's web port.
type rawConn struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, n *testNode) *rawConn {
	t.Helper()
	c := testkit.DialFrom(t, "127.0.0.1", n.Addr())
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

// inLoop dials n and makes one request with s on the connection, which
// puts it in the grain loop for what the test sends next.
func inLoop(t *testing.T, n *testNode, s grainSession) *rawConn {
	t.Helper()
	rc := dialRaw(t, n)
	rc.send(s.req("GET", "/bytes?n=2"))
	rc.read("GET")
	return rc
}

func (rc *rawConn) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatalf("send: %v", err)
	}
}

// read reads one answer to a request of method.
func (rc *rawConn) read(method string) (int, string) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("answer's body: %v", err)
	}
	return resp.StatusCode, string(body)
}

// closed reports whether the node closes the connection within d,
// having sent nothing more.
func (rc *rawConn) closed(d time.Duration) bool {
	rc.c.SetReadDeadline(time.Now().Add(d))
	n, err := rc.br.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	if n > 0 {
		rest, _ := rc.br.Peek(rc.br.Buffered())
		rc.t.Errorf("the node sent more: %q", rest)
	}
	return true
}

// grainSession is a signed-in grain: its host and its session cookie.
type grainSession struct {
	host, cookie string
}

func sessionOf(t *testing.T, jar http.CookieJar, origin string) grainSession {
	t.Helper()
	u, _ := url.Parse(origin)
	for _, c := range jar.Cookies(u) {
		if c.Name == "erg_grain" {
			return grainSession{host: u.Host, cookie: c.Name + "=" + c.Value}
		}
	}
	t.Fatalf("no grain session for %s", origin)
	return grainSession{}
}

// req is a request's head for the grain, with extra header lines.
func (s grainSession) req(method, path string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, s.host)
	if s.cookie != "" {
		fmt.Fprintf(&b, "Cookie: %s\r\n", s.cookie)
	}
	for _, e := range extra {
		b.WriteString(e + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

func headersIn(t *testing.T, body string) http.Header {
	t.Helper()
	var h http.Header
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatalf("not the echoed headers: %q", body)
	}
	return h
}

// Requests sent all at once, bodies among them, are answered in order,
// each rewritten as the first is.
func TestGrainLoopServesPipelinedRequests(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)
	rc := dialRaw(t, n)
	var smuggled []string
	for _, h := range smuggledHeaders {
		smuggled = append(smuggled, h[0]+": "+h[1])
	}
	smuggled = append(smuggled, "Accept: text/x-test")
	rc.send(s.req("GET", "/headers", smuggled...) +
		s.req("POST", "/headers", append(smuggled, "Content-Length: 5")...) + "hello" +
		s.req("POST", "/headers", append(smuggled, "Transfer-Encoding: chunked")...) + "3\r\nabc\r\n0\r\n\r\n" +
		s.req("HEAD", "/bytes?n=100") +
		s.req("GET", "/bytes?n=7") +
		s.req("GET", "/headers", smuggled...))
	for i := range 3 {
		code, body := rc.read("GET")
		if code != 200 {
			t.Fatalf("request %d: %d %s", i, code, body)
		}
		checkGrainHeaders(t, headersIn(t, body), "alice")
	}
	if code, body := rc.read("HEAD"); code != 200 || body != "" {
		t.Errorf("HEAD: %d %q", code, body)
	}
	if code, body := rc.read("GET"); code != 200 || body != "0123456" {
		t.Errorf("GET /bytes?n=7: %d %q", code, body)
	}
	code, body := rc.read("GET")
	if code != 200 {
		t.Fatalf("last: %d %s", code, body)
	}
	checkGrainHeaders(t, headersIn(t, body), "alice")
	// 100 KiB spliced, then the connection still carries requests.
	rc.send(s.req("GET", "/bytes?n=102400") + s.req("GET", "/bytes?n=3"))
	if code, body := rc.read("GET"); code != 200 || len(body) != 102400 {
		t.Errorf("100 KiB: %d, %d bytes", code, len(body))
	}
	if code, body := rc.read("GET"); code != 200 || body != "012" {
		t.Errorf("after 100 KiB: %d %q", code, body)
	}
	// Every request after the first was the loop's: without it, net/http
	// would have answered the same.
	if got := n.web.LoopServed(); got < 7 {
		t.Errorf("the grain loop served %d of the 8 requests after the first", got)
	}
}

// Every request on a connection is checked again: one without its
// session, with a forged one, or with one revoked since the last.
func TestGrainLoopChecksEverySession(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	ctx := context.Background()
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)

	rc := dialRaw(t, n)
	rc.send(s.req("GET", "/bytes?n=2"))
	if code, _ := rc.read("GET"); code != 200 {
		t.Fatalf("signed in: %d", code)
	}
	rc.send(grainSession{host: s.host}.req("GET", "/headers"))
	if code, body := rc.read("GET"); code != http.StatusUnauthorized {
		t.Errorf("no session on the same connection: %d %s", code, body)
	}

	rc = inLoop(t, n, s)
	forged := grainSession{host: s.host, cookie: "erg_grain=" + strings.Repeat("A", 43)}
	rc.send(forged.req("GET", "/headers"))
	if code, body := rc.read("GET"); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Errorf("a forged session on the same connection: %d %s", code, body)
	}

	// A visitor through a link, on one connection: revoked between two
	// requests, the second is refused.
	visitor := n.webClient(t)
	id, share := n.linkVisitor(t, alice, visitor, "echo")
	vs := sessionOf(t, visitor.c.Jar, n.grainOrigin(id))
	rc = dialRaw(t, n)
	rc.send(vs.req("GET", "/headers"))
	if code, body := rc.read("GET"); code != 200 {
		t.Fatalf("the visitor: %d %s", code, body)
	}
	if err := n.shares.Revoke(ctx, alice.user(), share); err != nil {
		t.Fatal(err)
	}
	rc.send(vs.req("GET", "/headers"))
	if code, body := rc.read("GET"); code != http.StatusForbidden {
		t.Errorf("the visitor after revocation, same connection: %d %s", code, body)
	}
}

// answers reads answers until the node closes the connection or is
// silent for a while, and returns their status codes.
func (rc *rawConn) answers() []int {
	var codes []int
	for {
		rc.c.SetReadDeadline(time.Now().Add(2 * time.Second))
		resp, err := http.ReadResponse(rc.br, nil)
		if err != nil {
			return codes
		}
		io.Copy(io.Discard, resp.Body)
		codes = append(codes, resp.StatusCode)
	}
}

// Smuggling a request inside another, on a connection the loop serves:
// the loop reads each framing as net/http's server reads it on a fresh
// connection (the same answers, the same requests reaching the grain),
// and what it forwards is framed anew, so the grain cannot read it
// another way.
func TestGrainLoopRefusesSmuggling(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)
	for i, framing := range [][]string{
		{"Content-Length: 4", "Transfer-Encoding: chunked"},
		{"Transfer-Encoding: chunked", "Content-Length: 4"},
		{"Content-Length: 4", "Content-Length: 40"},
		{"Content-Length: 4, 40"},
		{"Transfer-Encoding: xchunked"},
		{"Transfer-Encoding: chunked", "Transfer-Encoding: identity"},
		{"Transfer-Encoding: identity, chunked"},
		{"Content-Length : 4"},
		{"Content-Length: +4"},
		{"Content-Length: 4", " 0"},
		{"Transfer-Encoding:\tchunked"},
		{"X: y\nContent-Length: 30"},
	} {
		var got [2][]int
		var wrote [2]string
		for k, loop := range []bool{false, true} {
			n.get(origin + "/write?v=none")
			rc := dialRaw(t, n)
			if loop {
				rc.send(s.req("GET", "/bytes?n=2"))
				if code, _ := rc.read("GET"); code != 200 {
					t.Fatalf("signed in: %d", code)
				}
			}
			hidden := s.req("GET", fmt.Sprintf("/write?v=smuggled%d", i))
			rc.send(s.req("POST", "/headers", framing...) + "0\r\n\r\n" + hidden)
			got[k] = rc.answers()
			_, wrote[k] = n.get(origin + "/read")
		}
		t.Logf("%q: %v %q; %v %q", framing, got[0], wrote[0], got[1], wrote[1])
		if fmt.Sprint(got[0]) != fmt.Sprint(got[1]) || wrote[0] != wrote[1] {
			t.Errorf("%q: net/http answered %v and the grain kept %q; the loop %v and %q", framing, got[0], wrote[0], got[1], wrote[1])
		}
	}
}

// A request for another grain, or the shell, on a connection the loop
// serves is answered as if it had come on a connection of its own: by
// that grain's session, never by the first one's.
func TestGrainLoopServesOtherHostsByTheirOwnChecks(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, originA := n.newGrain("echo")
	_, originB := n.newGrain("echo")
	a := sessionOf(t, n.http.Jar, originA)
	b := sessionOf(t, n.http.Jar, originB)
	sessionID := func(body string) string {
		return headersIn(t, body).Get("X-Erg-Session-Id")
	}
	rc := dialRaw(t, n)
	rc.send(a.req("GET", "/headers"))
	code, body := rc.read("GET")
	if code != 200 {
		t.Fatalf("grain A: %d", code)
	}
	idA := sessionID(body)
	// A's session for B's host: not B's.
	rc.send(grainSession{host: b.host, cookie: a.cookie}.req("GET", "/headers"))
	if code, body := rc.read("GET"); code != http.StatusForbidden && code != http.StatusUnauthorized {
		t.Fatalf("grain B with A's session: %d %s", code, body)
	}
	rc = dialRaw(t, n)
	rc.send(a.req("GET", "/headers") + b.req("GET", "/headers") + a.req("GET", "/headers") +
		"GET /login HTTP/1.1\r\nHost: localhost\r\n\r\n")
	rc.read("GET")
	code, body = rc.read("GET")
	if code != 200 || sessionID(body) == idA || sessionID(body) == "" {
		t.Errorf("grain B after A: %d, session %q (A's %q)", code, sessionID(body), idA)
	}
	if code, body := rc.read("GET"); code != 200 || sessionID(body) != idA {
		t.Errorf("grain A after B: %d %q", code, sessionID(body))
	}
	if code, body := rc.read("GET"); code != 200 || !strings.Contains(body, "<form") {
		t.Errorf("the shell's login page after the grains: %d", code)
	}
}

// A websocket opened on a connection that carried plain requests is
// handed to the ordinary path and works.
func TestGrainLoopHandsWebsocketsBack(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)
	rc := inLoop(t, n, s)
	rc.send(s.req("GET", "/ws", "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="))
	rc.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(rc.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Errorf("upgrade on the loop's connection: %s", resp.Status)
	}
}

// Slow or silent on the second request: cut as the server cuts the
// first.
func TestGrainLoopTimesOutIdleAndSlowHeads(t *testing.T) {
	n := startNode(t, func(c *Config) { c.IdleTimeout = 400 * time.Millisecond; c.ReadTimeout = time.Second })
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)

	rc := inLoop(t, n, s)
	rc.send(s.req("GET", "/bytes?n=2"))
	rc.read("GET")
	start := time.Now()
	if !rc.closed(5 * time.Second) {
		t.Error("an idle connection of the loop still open after 5s")
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("closed after %v, before the idle timeout", d)
	}

	rc = inLoop(t, n, s)
	head := s.req("GET", "/bytes?n=2")
	rc.send(head[:20])
	start = time.Now()
	go func() {
		// A byte every 200ms: never silent for the idle timeout.
		for i := 20; i < len(head)-1; i++ {
			time.Sleep(200 * time.Millisecond)
			if _, err := rc.c.Write([]byte{head[i]}); err != nil {
				return
			}
		}
	}()
	if !rc.closed(6 * time.Second) {
		t.Error("a trickled head still open after 6s")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("a trickled head cut after %v, the header timeout is 1s", d)
	}
}

// The node's Close ends the loop's idle connections.
func TestGrainLoopClosesWithTheNode(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)
	rc := inLoop(t, n, s)
	done := make(chan struct{})
	go func() { n.Close(); close(done) }()
	if !rc.closed(5 * time.Second) {
		t.Error("the loop's connection still open after the node's Close")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Error("Close did not return")
	}
}

// What the node allocates for one request the grain loop serves, a real
// grain's small answer, counted by the runtime over many requests on one
// connection. Not parallel: other tests' nodes would count too. The
// client reads into one buffer, so the count is the node's (and what
// little its background work adds).
func TestGrainLoopAllocations(t *testing.T) {
	n := startNode(t, nil)
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)
	rc := inLoop(t, n, s)
	req := []byte(s.req("GET", "/bytes?n=100",
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64)", "Accept: */*", "Accept-Language: en"))
	buf := make([]byte, 4096)
	one := func() {
		if _, err := rc.c.Write(req); err != nil {
			t.Fatal(err)
		}
		got := 0
		for {
			k, err := rc.c.Read(buf[got:])
			if err != nil {
				t.Fatal(err)
			}
			got += k
			if i := bytes.Index(buf[:got], []byte("\r\n\r\n")); i >= 0 && got-i-4 >= 100 {
				break
			}
		}
		if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
			t.Fatalf("answer: %q", buf[:got])
		}
	}
	for range 200 {
		one() // the pools and buffers grown
	}
	const requests = 3000
	served := n.web.LoopServed()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range requests {
		one()
	}
	runtime.ReadMemStats(&after)
	if got := n.web.LoopServed() - served; got != requests {
		t.Fatalf("the loop served %d of %d requests", got, requests)
	}
	per := float64(after.Mallocs-before.Mallocs) / requests
	t.Logf("%.1f allocations per request the loop serves", per)
	// 8 (Go 1.26): the two heads' strings, the identity headers' values
	// and the permissions joined, the grain's lease (2) and the hook that
	// cuts the grain's connection at the request's end (2). 25 before the
	// cookie, the session's hash, the handle and the heads' values were
	// read or kept without allocating.
	if per > 10 {
		t.Errorf("%.1f allocations per request the loop serves, want at most 10", per)
	}
}
