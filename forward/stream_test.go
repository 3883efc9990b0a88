package forward

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

func TestForwardStreamsBothWays(t *testing.T) {
	chunk := make(chan struct{})
	big := bytes.Repeat([]byte("0123456789"), 300_000)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stream" {
			// Chunks as they come: the first must reach the client before
			// the second is written.
			io.WriteString(w, "first")
			w.(http.Flusher).Flush()
			<-chunk
			io.WriteString(w, "second")
			return
		}
		if r.URL.Path == "/big" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
			return
		}
		if r.URL.Path == "/head" {
			w.Header().Set("Content-Length", "1234")
			return
		}
		b, _ := io.ReadAll(r.Body) // an HTTP/1 handler reads, then writes
		w.Write(b)
	}))
	defer up.Close()
	p := New(func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", up.Listener.Addr().String())
	})
	defer p.Close()
	s := front(t, p)

	resp, err := s.Client().Get(s.URL + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("first chunk: %q %v", buf, err)
	}
	close(chunk)
	rest, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(rest) != "second" {
		t.Errorf("rest %q", rest)
	}

	// A big upload of unknown length, chunked both ways, and a big
	// download of known length (spliced).
	if code, body, _ := get(t, s.Client(), s.URL+"/big"); code != 200 || body != string(big) {
		t.Errorf("download: %d, %d bytes of %d", code, len(body), len(big))
	}
	req, _ := http.NewRequest("POST", s.URL+"/echo", io.NopCloser(bytes.NewReader(big)))
	req.ContentLength = -1
	resp, err = s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, big) {
		t.Errorf("echoed %d bytes of %d", len(got), len(big))
	}
	resp, err = s.Client().Post(s.URL+"/echo", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, big) {
		t.Errorf("echoed %d bytes of %d (length known)", len(got), len(big))
	}

	req, _ = http.NewRequest("HEAD", s.URL+"/head", nil)
	resp, err = s.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ContentLength != 1234 {
		t.Errorf("HEAD: Content-Length %d", resp.ContentLength)
	}
	if code, _, _ := get(t, s.Client(), s.URL+"/stream"); code != 200 {
		t.Errorf("after HEAD: %d", code)
	}
}

// What Forward allocates per request on a pooled connection, with
// nothing but the forwarding itself counted.
func TestForwardAllocations(t *testing.T) {
	u := newUpstream(t, ok("hello"))
	p := u.pool()
	w := &discardWriter{h: http.Header{}}
	r := httptest.NewRequest("GET", "http://x/page", nil)
	r.Header.Set("Accept", "text/html")
	ctx := context.Background()
	if err := p.Forward(ctx, w, r, nil); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		clear(w.h)
		if err := p.Forward(ctx, w, r, nil); err != nil {
			t.Fatal(err)
		}
	})
	// The upstream's own reading of each request is counted too; it is
	// most of the figure. Reading the answer (http.ReadResponse) is the
	// rest: a Response, its header map and values, the body's reader.
	t.Logf("%.0f allocations per forwarded request, the test upstream's included", allocs)
	if allocs > 40 {
		t.Errorf("%.0f allocations per forwarded request", allocs)
	}
	if u.accepts.Load() != 1 {
		t.Errorf("%d upstream connections", u.accepts.Load())
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// Behind an HTTP/2 server (browsers over TLS), Forward speaks HTTP/1.1
// to the upstream as before: a body of unknown length goes chunked, and
// the answer streams through the HTTP/2 writer.
func TestForwardBehindHTTP2(t *testing.T) {
	u := newUpstream(t, ok("hello"))
	p := u.pool()
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("the front spoke %s", r.Proto)
		}
		if err := p.Forward(r.Context(), w, r, nil); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
		}
	}))
	s.EnableHTTP2 = true
	s.StartTLS()
	defer s.Close()
	for range 3 {
		if code, body, _ := get(t, s.Client(), s.URL+"/"); code != 200 || body != "hello" {
			t.Fatalf("%d %q", code, body)
		}
	}
	resp, err := s.Client().Post(s.URL+"/up", "text/plain", io.NopCloser(strings.NewReader("body of unknown length")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	heads, bodies := u.requests()
	if last := len(heads) - 1; !strings.HasPrefix(heads[last], "POST /up") || bodies[last] != "body of unknown length" {
		t.Errorf("upstream got %q %q", heads[last], bodies[last])
	}
	if n := u.accepts.Load(); n != 1 {
		t.Errorf("%d upstream connections", n)
	}
}
