package webui

import (
	"context"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// forwardingHandle is a local grain as the proxy sees one: its transport
// forwards requests itself (forward.Pool does; this one answers).
type forwardingHandle struct {
	*fakeHandle
	forwarded int
}

func (g *forwardingHandle) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	return g, func() {}, nil
}

func (g *forwardingHandle) Forward(ctx context.Context, w http.ResponseWriter, r *http.Request, answer func(http.Header)) error {
	g.forwarded++
	g.goroutines = runtime.NumGoroutine()
	g.seen = r.Header
	w.Header().Set("X-App", "yes")
	answer(w.Header())
	w.WriteHeader(200)
	return nil
}

type forwardingBackend struct {
	Backend
	h *forwardingHandle
}

func (b *forwardingBackend) ResolveGrain(ctx context.Context, id string) (GrainHandle, error) {
	return b.h, nil
}

// The lean path rewrites as the ReverseProxy does, starts no goroutine
// and allocates less.
func TestForwardedRequestIsRewrittenAndStartsNoGoroutine(t *testing.T) {
	h, fake := newFakeHandler(t)
	g := &forwardingHandle{fakeHandle: fake}
	h.b = &forwardingBackend{h: g}
	req := func() *http.Request {
		r := grainRequest()
		r.Header.Set("X-Forwarded-For", "10.0.0.1")
		r.Header.Set("Forwarded", "for=10.0.0.1")
		r.AddCookie(&http.Cookie{Name: "theirs", Value: "1"})
		return r
	}
	h.ServeHTTP(httptest.NewRecorder(), req()) // warm up pools
	before := runtime.NumGoroutine()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req())
	if w.Code != 200 || g.forwarded != 2 {
		t.Fatalf("status %d, %d forwarded: %s", w.Code, g.forwarded, w.Body)
	}
	if g.goroutines != before {
		t.Errorf("%d goroutines while the grain answered, %d before the request", g.goroutines, before)
	}
	if got := g.seen.Get("X-Erg-Username"); got != "alice" {
		t.Errorf("grain told the user is %q", got)
	}
	if got := g.seen.Get("Cookie"); got != "theirs=1" {
		t.Errorf("Cookie to the grain %q", got)
	}
	for _, k := range []string{"X-Forwarded-For", "Forwarded"} {
		if v := g.seen.Get(k); v != "" {
			t.Errorf("the client's %s reached the grain: %q", k, v)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); csp != "frame-ancestors http://localhost:6080" || w.Header().Get("X-App") != "yes" {
		t.Errorf("answer header %v", w.Header())
	}
	allocs := testing.AllocsPerRun(200, func() {
		h.ServeHTTP(httptest.NewRecorder(), grainRequest())
	})
	base := testing.AllocsPerRun(200, func() {
		grainRequest()
		httptest.NewRecorder()
	})
	// About 25 (Go 1.26); the ReverseProxy path takes about 45
	// (TestProxiedRequestStartsNoGoroutine).
	t.Logf("%.0f allocations per forwarded request, %.0f of them the test's request and recorder", allocs, base)
	if allocs-base > 28 {
		t.Errorf("%.0f allocations per forwarded request beyond the test's own", allocs-base)
	}
}
