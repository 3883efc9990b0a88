package node

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"erg/tlsnode"
)

// h2Client is the node's test client made to offer HTTP/2 (a Transport
// with its own dialer offers only HTTP/1.1 unless told), with jar's
// cookies; redirects are returned, not followed.
func h2Client(n *testNode, jar http.CookieJar) *http.Client {
	tr := n.http.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = true
	return &http.Client{Jar: jar, Transport: tr, Timeout: time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// fetchAll sends req with c and returns the answer with its body read.
func fetchAll(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// TestHTTP2OverTLSOnlyWhenAskedAndCheckedAsHTTP1: a node offers HTTP/2
// only with TLS.HTTP2 (--http2); with it, a grain's requests over HTTP/2
// get the same identity headers, with every smuggled one dropped, the
// same refusals without a session or with a forged grain cookie, bodies
// both ways, and websockets still open (on HTTP/1.1).
func TestHTTP2OverTLSOnlyWhenAskedAndCheckedAsHTTP1(t *testing.T) {
	t.Parallel()
	off := startNode(t, func(c *Config) { c.Domain = "erg.test" })
	if resp, _ := fetchAll(t, h2Client(off, nil), mustReq(t, "GET", off.URL()+"/login")); resp.ProtoMajor != 1 {
		t.Errorf("a node without --http2 answered over %s", resp.Proto)
	}

	n := startNode(t, func(c *Config) { c.Domain = "erg.test"; c.TLS.HTTP2 = true })
	for _, c := range []struct {
		node *testNode
		want string
	}{{off, "HTTP/2 is off"}, {n, "and HTTP/2"}} {
		if code, body := c.node.setUp(t).get("/settings"); code != 200 || !strings.Contains(body, c.want) {
			t.Errorf("Settings: %d, no %q", code, c.want)
		}
	}
	c := h2Client(n, n.http.Jar)
	if resp, body := fetchAll(t, c, mustReq(t, "GET", n.URL()+"/login")); resp.ProtoMajor != 2 || resp.StatusCode != 200 || !strings.Contains(body, "password") {
		t.Fatalf("the sign-in page over HTTP/2: %s %s", resp.Proto, resp.Status)
	}
	_, origin := n.newGrain("echo")

	resp, body := fetchAll(t, c, withSmuggled(origin+"/headers"))
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("the grain over HTTP/2: %s %s", resp.Proto, resp.Status)
	}
	var hdr http.Header
	if err := json.Unmarshal([]byte(body), &hdr); err != nil {
		t.Fatal(err)
	}
	checkGrainHeaders(t, hdr, "alice")
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors") {
		t.Errorf("the grain's answer over HTTP/2 lacks the node's frame-ancestors: %q", csp)
	}

	// The bound on one connection's requests at once, as the server
	// announces it in its first SETTINGS frame.
	if got := maxStreamsAnnounced(t, n); got != tlsnode.MaxStreams {
		t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS %d, want %d", got, tlsnode.MaxStreams)
	}

	// Refusals: no session at all, and the grain's cookie with a forged
	// value. Each answers as it does over HTTP/1.1, and neither reaches
	// the grain (whose /write stores v, whatever the method).
	h1 := &http.Client{Transport: n.http.Transport, CheckRedirect: c.CheckRedirect}
	for _, cookie := range []string{"", "erg_grain=" + strings.Repeat("A", 43)} {
		for _, path := range []string{"/headers", "/write?v=forged"} {
			var got [2]*http.Response
			for i, cl := range []*http.Client{h1, h2Client(n, nil)} {
				req := mustReq(t, "GET", origin+path)
				if cookie != "" {
					req.Header.Set("Cookie", cookie)
				}
				got[i], _ = fetchAll(t, cl, req)
			}
			t.Logf("cookie %q, %s: %s (to %q)", cookie, path, got[1].Status, got[1].Header.Get("Location"))
			if got[1].ProtoMajor != 2 || got[1].StatusCode == 200 || got[1].StatusCode != got[0].StatusCode ||
				got[1].Header.Get("Location") != got[0].Header.Get("Location") {
				t.Errorf("cookie %q, %s: over HTTP/2 %s %s (to %q), over HTTP/1.1 %s (to %q)", cookie, path,
					got[1].Proto, got[1].Status, got[1].Header.Get("Location"), got[0].Status, got[0].Header.Get("Location"))
			}
		}
	}

	if _, got := fetchAll(t, c, mustReq(t, "GET", origin+"/read")); got == "forged" {
		t.Error("a refused request wrote to the grain")
	}

	// A body up and one down.
	if resp, _ := fetchAll(t, c, mustReqBody(t, "POST", origin+"/write?v=over-h2", "x")); resp.StatusCode != 200 {
		t.Fatalf("POST over HTTP/2: %s", resp.Status)
	}
	if _, got := fetchAll(t, c, mustReq(t, "GET", origin+"/read")); got != "over-h2" {
		t.Fatalf("the grain holds %q, want over-h2", got)
	}
	const size = 5 << 20
	if resp, got := fetchAll(t, c, mustReq(t, "GET", origin+"/bytes?n="+strconv.Itoa(size))); resp.ProtoMajor != 2 || len(got) != size {
		t.Fatalf("a 5 MiB download over HTTP/2: %s, %d bytes", resp.Proto, len(got))
	}

	// A websocket, which a client (as browsers do without the server's
	// extended CONNECT) opens on an HTTP/1.1 connection.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(origin, "https")+"/ws",
		&websocket.DialOptions{HTTPClient: n.http, HTTPHeader: http.Header{"Origin": {origin}}})
	if err != nil {
		t.Fatalf("websocket on a node with HTTP/2: %v", err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Fatalf("websocket echo: %q %v", msg, err)
	}
}

// h2Conn opens an HTTP/2 connection to n's web port by hand, preface and
// SETTINGS sent, for frames no client library would write.
func h2Conn(t *testing.T, n *testNode) *http2.Framer {
	t.Helper()
	c, err := tls.Dial("tcp", n.Addr(), &tls.Config{ServerName: "erg.test", RootCAs: n.roots(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN chose %q", p)
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fr
}

// maxStreamsAnnounced returns the SETTINGS_MAX_CONCURRENT_STREAMS that
// n's HTTP/2 server sends first.
func maxStreamsAnnounced(t *testing.T, n *testNode) uint32 {
	t.Helper()
	fr := h2Conn(t, n)
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
			if !ok {
				t.Fatal("the server announced no bound on streams")
			}
			return v
		}
	}
}

func mustReqBody(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	return req
}

// TestBrowserOverHTTP2: Chromium, trusting the node's CA, loads the shell
// and a grain over HTTP/2 from a node with TLS.HTTP2, and the grain's own
// POST and websocket work (the websocket on HTTP/1.1 of its own).
func TestBrowserOverHTTP2(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Domain = "erg.test"; c.TLS.HTTP2 = true })
	b := trustingBrowser(t, n)
	u := browserOwner(t, b, n)
	const proto = `performance.getEntriesByType("navigation")[0].nextHopProtocol`
	if got := eval[string](u, proto); got != "h2" {
		t.Fatalf("the shell came over %q, want h2", got)
	}
	g, err := n.grains.NewGrain(t.Context(), n.owner(), "echo", "E")
	if err != nil {
		t.Fatal(err)
	}
	u.do("open the grain at its own origin", chromedp.Navigate(g.URL))
	u.waitJS("the grain's page", `document.readyState === "complete" && document.documentElement.textContent.includes("hello from echo")`)
	if got := eval[string](u, proto); got != "h2" {
		t.Fatalf("the grain came over %q, want h2", got)
	}
	if got := eval[string](u, `fetch("/write?v=h2", {method: "POST", body: "x"}).then(r => fetch("/read")).then(r => r.text())`); got != "h2" {
		t.Fatalf("the grain's own POST over HTTP/2: %q", got)
	}
	got := eval[string](u, `new Promise(done => {
		const ws = new WebSocket("wss://" + location.host + "/ws");
		ws.onopen = () => ws.send("ping");
		ws.onmessage = e => done(e.data);
		ws.onerror = () => done("error");
	})`)
	if got != "ping" {
		t.Fatalf("the grain's websocket on a node with HTTP/2: %q", got)
	}
}

// BenchmarkGrainHTTP2 compares one node's echo grain over HTTPS with
// HTTP/1.1 and with HTTP/2 (TLS.HTTP2), same run, alternating rounds,
// with Go clients in this process: one request at a time; eight at once
// (eight HTTP/1.1 connections against eight streams on one HTTP/2 one);
// and a 50 MB download.
//
//	go test -run '^$' -bench GrainHTTP2 -benchtime 3x ./node/
func BenchmarkGrainHTTP2(b *testing.B) {
	n := startNode(b, func(c *Config) { c.Domain = "erg.test"; c.TLS.HTTP2 = true })
	_, origin := n.newGrain("echo")
	h1tr := n.http.Transport.(*http.Transport).Clone()
	h1tr.MaxIdleConnsPerHost = 8
	h1 := &http.Client{Jar: n.http.Jar, Transport: h1tr}
	h2 := h2Client(n, n.http.Jar)
	clients := []*http.Client{h1, h2}
	names := []string{"http1", "http2"}
	for i, c := range clients {
		resp, err := c.Get(origin + "/bytes?n=100")
		if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != i+1 {
			b.Fatalf("%s: %v %v", names[i], resp, err)
		}
		resp.Body.Close()
	}
	type figures struct{ rps, p50, p99 []float64 }
	conc := map[int][]figures{1: make([]figures, 2), 8: make([]figures, 2)}
	mbps := make([][]float64, 2)
	for range b.N {
		for _, workers := range []int{1, 8} {
			for i, c := range clients {
				rps, p50, p99 := loadFor(b, c, origin+"/bytes?n=100", workers, 2*time.Second)
				f := &conc[workers][i]
				f.rps, f.p50, f.p99 = append(f.rps, rps), append(f.p50, p50), append(f.p99, p99)
			}
		}
		for i, c := range clients {
			raw := &benchTarget{name: names[i], url: origin}
			mbps[i] = append(mbps[i], raw.download(b, c, "/bytes?n="+strconv.Itoa(50<<20), 50<<20))
		}
	}
	fmt.Printf("\nthe echo grain over HTTPS, Go clients in this process, %d round(s), ranges over rounds\n\n", b.N)
	fmt.Println("| requests at once | protocol | req/s | p50 | p99 |")
	fmt.Println("|---|---|---|---|---|")
	for _, workers := range []int{1, 8} {
		for i, f := range conc[workers] {
			fmt.Printf("| %d | %s | %s | %s ms | %s ms |\n", workers, names[i], spanOf(f.rps, "%.0f"), spanOf(f.p50, "%.2f"), spanOf(f.p99, "%.2f"))
			b.ReportMetric(slices.Min(f.rps), fmt.Sprintf("%s-c%d-req/s", names[i], workers))
		}
	}
	for i := range clients {
		fmt.Printf("  50 MB download over %s: %s MB/s\n", names[i], spanOf(mbps[i], "%.0f"))
		b.ReportMetric(slices.Min(mbps[i]), names[i]+"-download-MB/s")
	}
	fmt.Println()
}

// loadFor keeps workers requests of url in flight through c for d and
// returns requests per second and the p50 and p99 latency in ms.
func loadFor(b *testing.B, c *http.Client, url string, workers int, d time.Duration) (rps, p50, p99 float64) {
	b.Helper()
	lats := make([][]time.Duration, workers)
	errs := make(chan error, workers)
	end := time.Now().Add(d)
	t0 := time.Now()
	for w := range workers {
		go func() {
			for time.Now().Before(end) {
				r0 := time.Now()
				resp, err := c.Get(url)
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("GET %s: %s", url, resp.Status)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				lats[w] = append(lats[w], time.Since(r0))
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	all := slices.Concat(lats...)
	slices.Sort(all)
	at := func(p int) float64 { return float64(all[len(all)*p/100]) / 1e6 }
	return float64(len(all)) / time.Since(t0).Seconds(), at(50), at(99)
}

// TestRevokingAShareCutsItsOpenHTTP2Requests: over HTTP/2, where one
// connection carries a visitor's requests side by side, revoking the
// share cuts the download in flight on it at once and refuses the next
// request on that same connection.
func TestRevokingAShareCutsItsOpenHTTP2Requests(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.Domain = "erg.test"; c.TLS.HTTP2 = true })
	alice := n.setUp(t)
	visitor := n.webClient(t)
	visitor.c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	visitor.c.Timeout = 0 // the download below runs until it is cut
	id, share := n.linkVisitor(t, alice, visitor, "echo")
	origin := n.grainOrigin(id)
	ctx := context.Background()

	resp, err := visitor.c.Get(origin + "/bytes?n=" + strconv.Itoa(1<<30))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != 200 {
		t.Fatalf("the visitor's download: %s %s", resp.Proto, resp.Status)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if err := n.shares.Revoke(ctx, alice.user(), share); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Error("the download ran to its end after revocation")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the download was still running 10 s after revocation")
	}
	after, _ := fetchAll(t, visitor.c, mustReq(t, "GET", origin+"/headers"))
	if after.ProtoMajor != 2 || after.StatusCode != http.StatusForbidden {
		t.Errorf("the visitor's next request: %s %s, want 403 over HTTP/2", after.Proto, after.Status)
	}
}

// TestHTTP2FramesNoClientWouldSendReachNoGrain: HTTP/2 carries header
// values and names as bytes, where HTTP/1.1 has lines; written by hand,
// a value with a line break inside (an identity header smuggled into the
// HTTP/1.1 head the grain reads), a Transfer-Encoding, an uppercase name
// and a name with a space in it are each refused, and the grain never
// hears of them; a well-formed stream on the same connection is
// answered, so the frames are read.
func TestHTTP2FramesNoClientWouldSendReachNoGrain(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.Domain = "erg.test"; c.TLS.HTTP2 = true })
	_, origin := n.newGrain("echo")
	s := sessionOf(t, n.http.Jar, origin)
	bad := [][2]string{
		{"x-note", "a\r\nx-erg-username: mallory"},
		{"x-note", "a\nx-erg-username: mallory"},
		{"transfer-encoding", "chunked"},
		{"X-Erg-Username", "mallory"},
		{"x-erg-username mallory", "x"},
	}
	fr := h2Conn(t, n)
	var buf strings.Builder
	enc := hpack.NewEncoder(&buf)
	send := func(id uint32, extra [2]string) {
		buf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", s.host}, {":path", "/headers"}, {"cookie", s.cookie}, extra} {
			enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: []byte(buf.String()), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
	}
	for i, h := range bad {
		send(uint32(2*i+1), h)
	}
	good := uint32(2*len(bad) + 1)
	send(good, [2]string{"x-note", "fine"})

	status := map[uint32]string{}
	bodies := map[uint32]*strings.Builder{}
	for id := uint32(1); id <= good; id += 2 {
		bodies[id] = &strings.Builder{}
	}
	open := len(bad) + 1
	for open > 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("with %d streams unanswered: %v", open, err)
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			status[f.StreamID] = f.PseudoValue("status")
			if f.StreamEnded() {
				open--
			}
		case *http2.DataFrame:
			bodies[f.StreamID].Write(f.Data())
			fr.WriteWindowUpdate(0, uint32(len(f.Data())))
			fr.WriteWindowUpdate(f.StreamID, uint32(len(f.Data())))
			if f.StreamEnded() {
				open--
			}
		case *http2.RSTStreamFrame:
			status[f.StreamID] = "reset: " + f.ErrCode.String()
			open--
		case *http2.GoAwayFrame:
			t.Fatalf("GOAWAY %v with %d streams unanswered", f.ErrCode, open)
		}
	}
	for i, h := range bad {
		id := uint32(2*i + 1)
		if st := status[id]; st == "200" || strings.Contains(bodies[id].String(), "mallory") {
			t.Errorf("%q: %q came back: %s, %.200s", h[0], h[1], st, bodies[id])
		} else {
			t.Logf("%q: %s", h[0], st)
		}
	}
	if status[good] != "200" || !strings.Contains(bodies[good].String(), `"X-Note":["fine"]`) {
		t.Errorf("the well-formed stream: %s %.300s", status[good], bodies[good])
	}
}
