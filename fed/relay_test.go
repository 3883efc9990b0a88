package fed

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"capnproto.org/go/capnp/v3"
	"github.com/coder/websocket"
)

// grainApp stands in for an app in a grain: it reports what it was asked,
// hashes uploads, streams downloads and echoes websocket messages.
func grainApp(t testing.TB, hits *atomic.Int64) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s user=%q perms=%q cookie=%q", r.Method, r.URL.RequestURI(),
			r.Header.Get("X-Erg-Username"), r.Header.Get("X-Erg-Permissions"), r.Header.Get("Cookie"))
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(r.Header)
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		var n int64
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		w.Header().Set("Content-Length", fmt.Sprint(n))
		io.CopyN(w, zeros{}, n)
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"), msg...)); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// toServer sends every request to srv, as a node's transport into a grain does.
type toServer struct{ addr string }

func (s toServer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.URL.Host = s.addr
	return http.DefaultTransport.RoundTrip(r)
}

// relay is an owner's node serving one grain to a friend's node over a real
// TCP connection, and the friend's node's proxy in front of it.
type relay struct {
	server *GrainServer
	friend *httptest.Server // the friend's node's proxy
	grain  Grain            // the friend's capability
	hits   *atomic.Int64
	appURL string // the app itself, for baselines
}

func newRelay(t testing.TB) *relay {
	t.Helper()
	hits := new(atomic.Int64)
	app := grainApp(t, hits)
	gs := NewGrainServer(toServer{strings.TrimPrefix(app.URL, "http://")}, func(r *http.Request) {
		r.Header.Set("X-Erg-Username", "bob@friend")
		r.Header.Set("X-Erg-Permissions", "read,write")
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				conn := NewConn(c, capnp.Client(gs.Client()))
				<-conn.Done()
			}()
		}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := NewConn(c, capnp.Client{})
	t.Cleanup(func() { conn.Close() })
	grain := Grain(conn.Bootstrap(context.Background()))
	t.Cleanup(grain.Release)

	proxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "grain"}) },
		Transport: &Transport{Grain: grain},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, ErrRevoked) {
				http.Error(w, "revoked", http.StatusForbidden)
				return
			}
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
	}
	friend := httptest.NewServer(proxy)
	t.Cleanup(friend.Close)
	return &relay{server: gs, friend: friend, grain: grain, hits: hits, appURL: app.URL}
}

func get(t *testing.T, u string, h http.Header) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRelayRequests(t *testing.T) {
	r := newRelay(t)

	// Who is asking is the owner's node's to say: a forged name is dropped.
	code, body := get(t, r.friend.URL+"/echo?q=1", http.Header{
		"X-Erg-Username": {"mallory@evil"}, "X-Sandstorm-Username": {"mallory"}, "Cookie": {"a=b"},
	})
	if code != 200 || body != `GET /echo?q=1 user="bob@friend" perms="read,write" cookie="a=b"` {
		t.Fatalf("echo: %d %s", code, body)
	}

	// A request body of several MB streams up intact.
	up := make([]byte, 5<<20+123)
	rand.Read(up)
	resp, err := http.Post(r.friend.URL+"/upload", "application/octet-stream", bytes.NewReader(up))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	sum := sha256.Sum256(up)
	if want := fmt.Sprintf("%d %s", len(up), hex.EncodeToString(sum[:])); string(got) != want {
		t.Fatalf("upload: got %q, want %q", got, want)
	}

	// A download streams down intact, with its length.
	resp, err = http.Get(r.friend.URL + "/big?n=20000000")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != 20000000 || resp.ContentLength != 20000000 {
		t.Fatalf("download: %d bytes (Content-Length %d), %v", n, resp.ContentLength, err)
	}
}

func TestRelayWebsocketAndRevoke(t *testing.T) {
	r := newRelay(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(r.friend.URL, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := c.Read(ctx)
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("websocket: %q %v", got, err)
		}
	}

	// Revoking ends the open websocket within a second, and every later
	// request is refused without reaching the grain.
	closed := make(chan error, 1)
	go func() {
		_, _, err := c.Read(ctx)
		closed <- err
	}()
	start := time.Now()
	r.server.Revoke()
	select {
	case err := <-closed:
		if err == nil {
			t.Fatal("read a message after revocation")
		}
	case <-time.After(time.Second):
		t.Fatal("the websocket was still open a second after revocation")
	}
	t.Logf("websocket closed %v after revocation", time.Since(start))
	hits := r.hits.Load()
	if code, body := get(t, r.friend.URL+"/echo", nil); code != http.StatusForbidden {
		t.Fatalf("after revocation: %d %s", code, body)
	}
	if r.hits.Load() != hits {
		t.Error("a request reached the grain after revocation")
	}
}

// call sends one raw exchange head, as a misbehaving node could.
func call(t *testing.T, g Grain, method, path string, headers [][2]string, length int64) error {
	t.Helper()
	fut, release := g.Request(context.Background(), func(p Grain_request_Params) error {
		head, err := p.NewHead()
		if err != nil {
			return err
		}
		head.SetMethod(method)
		head.SetPath(path)
		head.SetContentLength(length)
		list, err := head.NewHeaders(int32(len(headers)))
		if err != nil {
			return err
		}
		for i, h := range headers {
			list.At(i).SetName(h[0])
			list.At(i).SetValue(h[1])
		}
		return p.SetResponse(Responder_ServerToClient(&responder{started: make(chan startResult, 1)}))
	})
	defer release()
	_, err := fut.Struct()
	return err
}

func TestRelayRefusesMalformedRequests(t *testing.T) {
	r := newRelay(t)
	many := make([][2]string, maxHeaders+1)
	for i := range many {
		many[i] = [2]string{fmt.Sprintf("X-H%d", i), "v"}
	}
	huge := [][2]string{{"X-Big", strings.Repeat("a", 40<<10)}, {"X-Big2", strings.Repeat("b", 40<<10)}}
	cases := []struct {
		name, method, path string
		headers            [][2]string
		length             int64
	}{
		{"method with a space", "GE T", "/", nil, 0},
		{"empty method", "", "/", nil, 0},
		{"absolute URL", "GET", "http://evil.example/", nil, 0},
		{"scheme-relative path", "GET", "//evil.example/x", nil, 0},
		{"relative path", "GET", "echo", nil, 0},
		{"path too long", "GET", "/" + strings.Repeat("a", maxPath), nil, 0},
		{"header splitting", "GET", "/", [][2]string{{"X-A", "1\r\nX-Erg-Username: root"}}, 0},
		{"bad header name", "GET", "/", [][2]string{{"X A", "1"}}, 0},
		{"too many headers", "GET", "/", many, 0},
		{"headers too large", "GET", "/", huge, 0},
		{"negative length", "POST", "/upload", nil, -7},
	}
	for _, c := range cases {
		if err := call(t, r.grain, c.method, c.path, c.headers, c.length); err == nil || !strings.Contains(err.Error(), "bad request") {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if n := r.hits.Load(); n != 0 {
		t.Errorf("%d malformed requests reached the grain", n)
	}
	// The relay still works after all that.
	if code, _ := get(t, r.friend.URL+"/echo", nil); code != 200 {
		t.Errorf("after malformed requests: %d", code)
	}
}

func TestOversizedMessageEndsOnlyThatConnection(t *testing.T) {
	r := newRelay(t)
	// A second connection to the same kind of server, sending a message
	// header that claims 16 MiB.
	gs := NewGrainServer(toServer{"127.0.0.1:1"}, nil)
	a, b := net.Pipe()
	conn := NewConn(a, capnp.Client(gs.Client()))
	var hdr [16]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0)     // one segment
	binary.LittleEndian.PutUint32(hdr[4:], 2<<20) // of 2 Mi words = 16 MiB
	b.SetDeadline(time.Now().Add(5 * time.Second))
	b.Write(hdr[:8])
	select {
	case <-conn.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the connection survived an oversized message")
	}
	b.Close()
	if code, _ := get(t, r.friend.URL+"/echo", nil); code != 200 {
		t.Errorf("other connections after an oversized message: %d", code)
	}
}

// A Grain served in process (as the bridge's HTTP face uses one) answers a
// request without a body before Transport has looked at the body stream
// it has none of: many such requests, one after another and at once, all
// get their answer.
func TestTransportInProcess(t *testing.T) {
	answer := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader("ok")), ContentLength: 2}, nil
	})
	gs := NewGrainServer(answer, nil)
	g := gs.Client()
	defer g.Release()
	c := &http.Client{Transport: &Transport{Grain: g}}
	get := func() error {
		resp, err := c.Get("http://grain/")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "ok" {
			return fmt.Errorf("%s %q", resp.Status, b)
		}
		return nil
	}
	for range 500 {
		if err := get(); err != nil {
			t.Fatal(err)
		}
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			var err error
			for i := 0; i < 200 && err == nil; i++ {
				err = get()
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
