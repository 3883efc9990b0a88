package webui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"erg"
)

// fakeGrains is a Backend with one grain, whose transport answers every
// request itself.
type fakeGrains struct {
	Backend // nil: only ResolveGrain is called
	h       *fakeHandle
}

func (b *fakeGrains) ResolveGrain(ctx context.Context, id string) (GrainHandle, error) {
	if id != "abc" {
		return nil, erg.ErrNotFound
	}
	return b.h, nil
}

type fakeHandle struct {
	session    context.Context
	cancel     context.CancelFunc
	goroutines int // counted while the grain answers
	seen       http.Header
}

func (g *fakeHandle) Redeem(ctx context.Context, token string) (string, error) { return "s", nil }

func (g *fakeHandle) Viewer(ctx context.Context, session string) (erg.Viewer, error) {
	if session != "s" {
		return erg.Viewer{}, erg.ErrForbidden
	}
	return erg.Viewer{UserID: "u", Username: "alice", Permissions: []string{"read"}, SessionID: "sid",
		Session: g.session, Expires: time.Now().Add(time.Hour), Account: "acct"}, nil
}

func (g *fakeHandle) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	return g, func() {}, nil
}

func (g *fakeHandle) RoundTrip(r *http.Request) (*http.Response, error) {
	g.goroutines = runtime.NumGoroutine()
	g.seen = r.Header
	return &http.Response{StatusCode: 200, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

func newFakeHandler(t testing.TB) (*Handler, *fakeHandle) {
	g := &fakeHandle{}
	g.session, g.cancel = context.WithCancel(context.Background())
	t.Cleanup(g.cancel)
	return NewHandler(Services{Node: &fakeGrains{h: g}}, Options{Domain: "localhost"}, nil), g
}

func grainRequest() *http.Request {
	r := httptest.NewRequest("GET", "http://g-abc.localhost:6080/page", nil)
	r.AddCookie(&http.Cookie{Name: grainCookie, Value: "s"})
	r.Header.Set("X-Erg-Username", "mallory")
	return r
}

// A proxied request starts no goroutine of its own (none watching the
// session, none per ReverseProxy) and allocates a bounded amount: one
// ReverseProxy serves every request.
func TestProxiedRequestStartsNoGoroutine(t *testing.T) {
	h, g := newFakeHandler(t)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, grainRequest()) // warm up pools
	before := runtime.NumGoroutine()
	w = httptest.NewRecorder()
	h.ServeHTTP(w, grainRequest())
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if g.goroutines != before {
		t.Errorf("%d goroutines while the grain answered, %d before the request", g.goroutines, before)
	}
	if got := g.seen.Get("X-Erg-Username"); got != "alice" {
		t.Errorf("grain told the user is %q", got)
	}
	if csp := w.Header().Get("Content-Security-Policy"); csp != "frame-ancestors http://localhost:6080" {
		t.Errorf("CSP %q", csp)
	}
	allocs := testing.AllocsPerRun(200, func() {
		h.ServeHTTP(httptest.NewRecorder(), grainRequest())
	})
	base := testing.AllocsPerRun(200, func() {
		grainRequest()
		httptest.NewRecorder()
	})
	// What the proxy itself allocates: headers, contexts, the outgoing
	// request, about 45 (Go 1.26). A ReverseProxy, closures and a
	// goroutine per request, as before the one Handler-wide proxy, took
	// 68.
	t.Logf("%.0f allocations per proxied request, %.0f of them the test's request and recorder", allocs, base)
	if allocs-base > 50 {
		t.Errorf("%.0f allocations per proxied request beyond the test's own", allocs-base)
	}
}

// Dropping a session cuts the requests open on it, through its context.
func TestDroppedSessionCutsOpenRequest(t *testing.T) {
	h, g := newFakeHandler(t)
	cut := make(chan error, 1)
	blocking := &blockingGrain{fakeHandle: g, cut: cut, started: make(chan struct{})}
	h.b = &blockingBackend{h: blocking}
	w := httptest.NewRecorder()
	done := make(chan struct{})
	go func() { h.ServeHTTP(w, grainRequest()); close(done) }()
	<-blocking.started
	g.cancel()
	select {
	case err := <-cut:
		if err == nil {
			t.Error("the request's context ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dropping the session did not cut the request")
	}
	<-done
	if w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "access to this grain has ended") {
		t.Errorf("status %d: %s", w.Code, w.Body)
	}
}

type blockingBackend struct {
	Backend
	h *blockingGrain
}

func (b *blockingBackend) ResolveGrain(ctx context.Context, id string) (GrainHandle, error) {
	return b.h, nil
}

type blockingGrain struct {
	*fakeHandle
	cut     chan error
	started chan struct{}
}

func (g *blockingGrain) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	return g, func() {}, nil
}

func (g *blockingGrain) RoundTrip(r *http.Request) (*http.Response, error) {
	close(g.started)
	<-r.Context().Done()
	g.cut <- r.Context().Err()
	return nil, r.Context().Err()
}
