package node

import (
	"bufio"
	"context"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"erg/internal/testkit"
)

// The tests here do not run in parallel: they count the node's open
// connections, time its timeouts on the wall clock and read the test
// process's heap (runtime.MemStats), which other tests' nodes would skew.

// closedWithin reports whether the server closes c (a read ends in EOF or
// a reset) within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return true
}

// rawGet sends one request on c and reads its response.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, extra string) *http.Response {
	t.Helper()
	fmt.Fprintf(c, "GET /login HTTP/1.1\r\nHost: localhost\r\n%s\r\n", extra)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("response: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestIdleAndSilentConnectionsAreClosed(t *testing.T) {
	n := startNode(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond; c.ReadTimeout = 500 * time.Millisecond })
	// Connected, never a byte sent: cut at the read (header) timeout.
	silent := testkit.DialFrom(t, "127.0.0.1", n.Addr())
	if !closedWithin(silent, 3*time.Second) {
		t.Error("a silent connection still open after 3s")
	}
	// A request answered, then nothing: cut at the idle timeout.
	c := testkit.DialFrom(t, "127.0.0.1", n.Addr())
	br := bufio.NewReader(c)
	if resp := rawGet(t, c, br, ""); resp.StatusCode != 200 {
		t.Fatalf("GET /login: %s", resp.Status)
	}
	start := time.Now()
	if !closedWithin(c, 3*time.Second) {
		t.Error("an idle keep-alive connection still open after 3s")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("idle connection closed after %v, before the idle timeout", d)
	}
	waitOpen(t, n, 0)
}

// slowBody sends fast bytes, then one byte every gap until stop closes.
type slowBody struct {
	fast int
	gap  time.Duration
	stop chan struct{}
}

func (b *slowBody) Read(p []byte) (int, error) {
	if b.fast > 0 {
		k := min(len(p), b.fast)
		clear(p[:k])
		b.fast -= k
		return k, nil
	}
	select {
	case <-time.After(b.gap):
		p[0] = 0
		return 1, nil
	case <-b.stop:
		return 0, io.EOF
	}
}

func TestTricklingUploadIsCutAndASteadyOneIsNot(t *testing.T) {
	n := startNode(t, func(c *Config) { c.ReadTimeout = time.Second; c.MinUploadRate = 64 << 10 })
	alice := n.setUp(t)
	stop := make(chan struct{})
	defer close(stop)
	send := func(body io.Reader) (int, string, time.Duration) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", n.URL()+"/api/grains/restore", body)
		req.ContentLength = -1
		req.Header.Set("X-CSRF-Token", alice.csrf)
		start := time.Now()
		code, msg, _ := alice.do(req)
		return code, msg, time.Since(start)
	}
	// 1 byte every 100ms: far below 64 KiB/s, though never silent for
	// as long as the read timeout.
	code, msg, took := send(&slowBody{fast: 1 << 10, gap: 100 * time.Millisecond, stop: stop})
	if code != http.StatusRequestTimeout || took > 5*time.Second {
		t.Errorf("trickling upload: %d %s after %v, want 408 within a few seconds", code, msg, took)
	}
	// 128 KiB every 200ms for 2.5s (640 KiB/s): longer than the read
	// timeout, and read to its end (then refused as no backup).
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 128<<10)
		for range 12 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		pw.Close()
	}()
	code, msg, took = send(pr)
	if code == http.StatusRequestTimeout || code == 0 || took < 2*time.Second {
		t.Errorf("steady upload: %d %s after %v, want it read to the end", code, msg, took)
	}
}

func TestOversizedHeadersAreRefused(t *testing.T) {
	n := startNode(t, nil)
	c := testkit.DialFrom(t, "127.0.0.1", n.Addr())
	br := bufio.NewReader(c)
	if resp := rawGet(t, c, br, "X-Pad: "+strings.Repeat("a", 16<<10)+"\r\n"); resp.StatusCode != 200 {
		t.Errorf("16 KiB of headers: %s, want 200", resp.Status)
	}
	c = testkit.DialFrom(t, "127.0.0.1", n.Addr())
	br = bufio.NewReader(c)
	if resp := rawGet(t, c, br, "X-Pad: "+strings.Repeat("a", 65<<10)+"\r\n"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("65 KiB of headers: %s, want 431", resp.Status)
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address src, one at a time, kept alive between requests.
func clientFrom(n *testNode, src string) *http.Client {
	c := n.newClient()
	addr := n.Addr()
	c.Transport = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return d.DialContext(ctx, "tcp", addr)
		},
		MaxConnsPerHost: 1,
		IdleConnTimeout: time.Minute,
	}
	return c
}

func getOK(t *testing.T, c *http.Client, url string) bool {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Logf("GET %s: %v", url, err)
		return false
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode == 200
}

func TestNodeCapsConnectionsPerAddressAndOverall(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxConns = 6; c.MaxConnsPerIP = 3 })
	addr := n.Addr()
	for range 3 {
		testkit.DialFrom(t, "127.0.0.1", addr)
	}
	waitOpen(t, n, 3)
	if !closedWithin(testkit.DialFrom(t, "127.0.0.1", addr), 3*time.Second) {
		t.Error("a fourth connection from 127.0.0.1 was kept over the per-address cap of 3")
	}
	other := clientFrom(n, "127.0.0.2")
	if !getOK(t, other, n.URL()+"/login") {
		t.Fatal("another address was not served while 127.0.0.1 was at its cap")
	}
	testkit.DialFrom(t, "127.0.0.3", addr)
	testkit.DialFrom(t, "127.0.0.3", addr)
	waitOpen(t, n, 6)
	if !closedWithin(testkit.DialFrom(t, "127.0.0.4", addr), 3*time.Second) {
		t.Error("a connection was kept over the overall cap of 6")
	}
	// At the cap, a client with a connection open is still served.
	if !getOK(t, other, n.URL()+"/login") {
		t.Error("a kept-alive client was not served at the overall cap")
	}
	if _, peak, _ := n.limits.Stats(); peak > 6 {
		t.Errorf("%d connections were open at once, over the cap of 6", peak)
	}
}

// waitOpen waits for the node to count want connections open.
func waitOpen(t *testing.T, n *testNode, want int) {
	t.Helper()
	var open int
	if testkit.Poll(3*time.Second, func() bool { open, _, _ = n.limits.Stats(); return open == want }) != nil {
		t.Fatalf("%d connections open, want %d", open, want)
	}
}

// TestConnectionFloodIsBounded opens connections from four addresses, well
// past the caps, each sending up to 1 MiB of headers, and checks that the
// node never holds more than its cap, that its heap stays small, and that
// a client already connected is served throughout.
func TestConnectionFloodIsBounded(t *testing.T) {
	const maxConns, perIP, perAddr = 40, 16, 50
	n := startNode(t, func(c *Config) { c.MaxConns = maxConns; c.MaxConnsPerIP = perIP; c.ReadTimeout = 5 * time.Second })
	addr := n.Addr()
	normal := clientFrom(n, "127.0.0.9")
	if !getOK(t, normal, n.URL()+"/login") {
		t.Fatal("the normal client was not served before the flood")
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	pad := []byte("X-Pad: " + strings.Repeat("a", 64<<10))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 * perAddr {
		src := fmt.Sprintf("127.0.0.%d", 1+i%4)
		wg.Go(func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(6 * time.Second))
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
				return
			}
			for sent := 0; sent < 1<<20; sent += len(pad) {
				if _, err := c.Write(pad); err != nil {
					return
				}
			}
			<-stop
		})
	}

	var peakHeap uint64
	served := 0
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peakHeap = max(peakHeap, m.HeapAlloc)
		if getOK(t, normal, n.URL()+"/login") {
			served++
		} else {
			t.Error("the normal client was not served during the flood")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	open, peak, refused := n.limits.Stats()
	t.Logf("peak %d open, %d refused, %d served to the normal client, heap %d -> %d MiB", peak, refused, served, before.HeapAlloc>>20, peakHeap>>20)
	if peak > maxConns {
		t.Errorf("%d connections open at once, over the cap of %d", peak, maxConns)
	}
	if refused == 0 {
		t.Errorf("no connection refused of %d", 4*perAddr)
	}
	if grew := int64(peakHeap) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("heap grew %d MiB under the flood", grew>>20)
	}
	if open > 1 {
		// The normal client's keep-alive connection may remain.
		waitOpen(t, n, 1)
	}
}

func TestWebsocketsPerUserAreCapped(t *testing.T) {
	n := startNode(t, func(c *Config) { c.MaxWebsockets = 2 })
	alice := n.setUp(t)
	ctx := context.Background()
	g, err := n.grains.NewGrain(ctx, alice.user(), "notes", "")
	if err != nil {
		t.Fatal(err)
	}
	code, body := alice.get("/grains/" + g.ID)
	m := frameRe.FindStringSubmatch(body)
	if code != 200 || m == nil {
		t.Fatalf("grain page: %d, no frame", code)
	}
	if code, _ := alice.get(html.UnescapeString(m[1])); code != http.StatusSeeOther {
		t.Fatalf("frame login: %d", code)
	}
	wsURL := "ws" + strings.TrimPrefix(n.grainOrigin(g.ID), "http") + "/ws"
	dial := func() (*websocket.Conn, int, error) {
		c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: alice.c})
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		if err == nil {
			t.Cleanup(func() { c.CloseNow() })
			if _, _, err := c.Read(ctx); err != nil { // the note
				t.Fatal(err)
			}
		}
		return c, code, err
	}
	first, _, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	if _, code, err := dial(); err == nil || code != http.StatusTooManyRequests {
		t.Errorf("a third websocket: %d %v, want 429", code, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	go first.Read(pctx) // Ping needs a reader
	if err := first.Ping(pctx); err != nil {
		t.Errorf("the first websocket after the refusal: %v", err)
	}
	// Closing one makes room for another.
	second.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(3 * time.Second)
	for {
		_, code, err := dial()
		if err == nil {
			break
		}
		if code != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("a websocket after closing one: %d %v", code, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
