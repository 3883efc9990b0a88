package nodetest

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"erg"
)

// Window is a grain open in a browser: its origin, and the browser.
type Window struct {
	ID     string // the grain's id on the node it is open on
	Origin string // http://g-<id>.localhost:<port>
	HTTP   *http.Client
	t      *testing.T
}

// Open opens g in a new browser of n's web port: g itself if it is n's,
// else the grain a friend shared with n's owner under g's title.
func (n *Node) Open(g erg.Grain) *Window {
	n.t.Helper()
	return n.OpenIn(n.Browser(), g)
}

// OpenIn is Open in browser c, which may already hold other grains.
func (n *Node) OpenIn(c *http.Client, g erg.Grain) *Window {
	n.t.Helper()
	id := g.ID
	if !n.owns(g.ID) {
		id = n.Shared(g.Title).ID
	}
	og, err := n.Client().OpenGrain(context.Background(), id)
	if err != nil {
		n.t.Fatalf("open %s on %s: %v", id, n.Name, err)
	}
	resp, err := c.Get(og.URL)
	if err != nil {
		n.t.Fatalf("sign in to %s on %s: %v", id, n.Name, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		n.t.Fatalf("sign in to %s on %s: %s", id, n.Name, resp.Status)
	}
	origin, _, _ := strings.Cut(og.URL, "/_erg/")
	return &Window{ID: id, Origin: origin, HTTP: c, t: n.t}
}

func (n *Node) owns(id string) bool {
	gs, err := n.Client().Grains(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	for _, g := range gs {
		if g.ID == id {
			return true
		}
	}
	return false
}

// Get fetches path on the grain's origin.
func (w *Window) Get(path string) (int, string) {
	w.t.Helper()
	return w.Do(http.MethodGet, path, "")
}

// Do sends a request with body to path on the grain's origin.
func (w *Window) Do(method, path, body string) (int, string) {
	w.t.Helper()
	req, err := http.NewRequest(method, w.Origin+path, strings.NewReader(body))
	if err != nil {
		w.t.Fatal(err)
	}
	resp, err := w.HTTP.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", method, w.Origin+path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
