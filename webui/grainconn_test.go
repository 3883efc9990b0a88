package webui

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"erg/forward"
)

// relayingHandle is a local grain whose transport is a real forward.Pool
// to an app that echoes who it was told is asking.
type relayingHandle struct {
	*fakeHandle
	pool *forward.Pool
}

func (g *relayingHandle) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	return g.pool, func() {}, nil
}

type relayingBackend struct {
	Backend
	h *relayingHandle
}

func (b *relayingBackend) ResolveGrain(ctx context.Context, id string) (GrainHandle, error) {
	return b.h, nil
}

// loopServer serves h on a loopback port with the grain loop on, as the
// node does, in front of an app that answers with the username and the
// cookies it was sent.
func loopServer(t *testing.T) (*Handler, string) { return loopServerIdle(t, 0) }

// loopServerIdle is loopServer with the servers' IdleTimeout.
func loopServerIdle(t *testing.T, idle time.Duration) (*Handler, string) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %q", r.URL.Path, r.Header.Get("X-Erg-Username"), r.Header["Cookie"])
	}))
	t.Cleanup(app.Close)
	pool := forward.New(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", app.Listener.Addr().String())
	})
	t.Cleanup(pool.Close)
	h, fake := newFakeHandler(t)
	h.b = &relayingBackend{h: &relayingHandle{fakeHandle: fake, pool: pool}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle}
	back := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle}
	go srv.Serve(ln)
	go back.Serve(h.HandedBack())
	t.Cleanup(func() {
		srv.Close()
		back.Close()
		h.Shutdown(context.Background())
	})
	return h, ln.Addr().String()
}

// The grain loop reads a plain request's head with forward.Heads, and
// what it reads is admitted and rewritten as ever: the client's word on
// who it is replaced, the grain's cookie dropped; a head of another kind
// (a folded line) is read by net/http's parser on the same connection.
func TestGrainLoopReadsPlainHeadsItself(t *testing.T) {
	h, addr := loopServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(addr)
	req := func(path string, extra ...string) string {
		return "GET " + path + " HTTP/1.1\r\nHost: g-abc.localhost:" + port + "\r\n" +
			"Cookie: theirs=1; " + grainCookie + "=s\r\nX-Erg-Username: mallory\r\n" + strings.Join(extra, "") + "\r\n"
	}
	io.WriteString(c, req("/one")+req("/two")+req("/three", "X-Folded: a\r\n b\r\n")+req("/four"))
	br := bufio.NewReader(c)
	for _, path := range []string{"/one", "/two", "/three", "/four"} {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		if want := path + ` alice ["theirs=1"]`; resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s: %d %q, want %q", path, resp.StatusCode, body, want)
		}
	}
	// The first request is net/http's; the loop served the others, and
	// read the heads of all but the folded one itself.
	if served, quick := h.loops.served.Load(), h.loops.quick.Load(); served != 3 || quick != 2 {
		t.Errorf("the loop served %d requests and read %d heads itself, want 3 and 2", served, quick)
	}
	// It read and wrote the client's socket with raw calls
	// (forward.Socket).
	if raw := h.loops.raw.Load(); raw != 1 {
		t.Errorf("the loop read %d connections through a Socket, want 1", raw)
	}
}

// A connection the loop serves is kept while requests come more often
// than the idle timeout, however long that goes on, and closed once none
// has come for the idle timeout (the loop moves the deadline only now
// and then, not for every request).
func TestGrainLoopIdleTimeoutCountsFromTheLastRequest(t *testing.T) {
	const idle = 300 * time.Millisecond
	h, addr := loopServerIdle(t, idle)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, port, _ := net.SplitHostPort(addr)
	req := "GET /x HTTP/1.1\r\nHost: g-abc.localhost:" + port + "\r\nCookie: " + grainCookie + "=s\r\n\r\n"
	br := bufio.NewReader(c)
	start := time.Now()
	var last time.Time // of the last answer
	for i := 0; ; i++ {
		io.WriteString(c, req)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d, %v after the first: %v", i, time.Since(start).Round(time.Millisecond), err)
		}
		io.Copy(io.Discard, resp.Body)
		last = time.Now()
		if last.Sub(start) > 4*idle {
			break
		}
		time.Sleep(idle / 10)
	}
	if h.loops.served.Load() < 10 {
		t.Fatalf("the loop served %d requests", h.loops.served.Load())
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("the idle connection: %v, want it closed", err)
	}
	if d := time.Since(last); d < idle-idle/32 || d > idle+time.Second {
		t.Errorf("closed %v after the last answer, the idle timeout is %v", d, idle)
	}
}
