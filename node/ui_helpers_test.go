package node

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"erg"
)

// owner is the node's owner account, whom the control socket acts for.
func (n *testNode) owner() erg.User {
	n.t.Helper()
	u, err := n.accounts.Owner(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return u
}

// web is a browser-like client of the node's pages and HTTP API: a cookie
// jar, no redirects followed, and the CSRF token of its session.
type web struct {
	t    *testing.T
	n    *testNode
	c    *http.Client
	csrf string
	base string // the node's URL when it is not n's (an `erg run` process)
}

// url makes a path absolute on the node the client talks to.
func (w *web) url(path string) string {
	if w.base != "" {
		return w.base + path
	}
	return w.n.URL() + path
}

func (n *testNode) webClient(t *testing.T) *web {
	c := n.newClient()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &web{t: t, n: n, c: c}
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (w *web) do(req *http.Request) (int, string, http.Header) {
	w.t.Helper()
	resp, err := w.c.Do(req)
	if err != nil {
		w.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if m := csrfRe.FindSubmatch(b); m != nil {
		w.csrf = string(m[1])
	}
	return resp.StatusCode, string(b), resp.Header
}

func (w *web) get(path string) (int, string) {
	w.t.Helper()
	if strings.HasPrefix(path, "/") {
		path = w.url(path)
	}
	req, _ := http.NewRequest("GET", path, nil)
	code, body, _ := w.do(req)
	return code, body
}

// post sends a form; the session's CSRF token is added unless form
// already has a "csrf" entry.
func (w *web) post(path string, form url.Values, hdr ...string) (int, string) {
	w.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, ok := form["csrf"]; !ok && w.csrf != "" {
		form.Set("csrf", w.csrf)
	}
	req, _ := http.NewRequest("POST", w.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	code, body, _ := w.do(req)
	return code, body
}

// api calls the JSON API with the session and its CSRF header.
func (w *web) api(method, path string, body any) (int, string) {
	w.t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, w.url(path), r)
	if w.csrf != "" {
		req.Header.Set("X-CSRF-Token", w.csrf)
	}
	code, out, _ := w.do(req)
	return code, out
}

func (w *web) login(user, password string) {
	w.t.Helper()
	code, body := w.post("/login", url.Values{"username": {user}, "password": {password}})
	if code != http.StatusSeeOther {
		w.t.Fatalf("login %s: %d %s", user, code, body)
	}
	if code, _ := w.get("/grains"); code != 200 || w.csrf == "" {
		w.t.Fatalf("after login: %d", code)
	}
}

const ownerPassword = "owner password 1"

// setUp makes the node's owner account ("alice") and returns her session.
func (n *testNode) setUp(t *testing.T) *web {
	t.Helper()
	w := n.webClient(t)
	q, _ := url.Parse(n.SetupURL())
	code, body := w.post("/setup", url.Values{"token": {q.Query().Get("token")}, "username": {"alice"},
		"password": {ownerPassword}, "password2": {ownerPassword}})
	if code != http.StatusSeeOther {
		t.Fatalf("setup: %d %s", code, body)
	}
	w.get("/grains")
	return w
}

// join invites a user and returns their session.
func (n *testNode) join(t *testing.T, name string) *web {
	t.Helper()
	inv, err := n.accounts.InviteUser(context.Background(), n.owner(), name)
	if err != nil {
		t.Fatal(err)
	}
	w := n.webClient(t)
	path := strings.TrimPrefix(inv.URL, n.URL())
	if code, body := w.post(path, url.Values{"password": {name + " password"}, "password2": {name + " password"}}); code != http.StatusSeeOther {
		t.Fatalf("join %s: %d %s", name, code, body)
	}
	w.get("/grains")
	return w
}

func (w *web) user() erg.User {
	w.t.Helper()
	code, body := w.api("GET", "/api/me", nil)
	var u erg.User
	if code != 200 || json.Unmarshal([]byte(body), &u) != nil {
		w.t.Fatalf("/api/me: %d %s", code, body)
	}
	return u
}

// linkVisitor shares a new grain of app by owner with an anonymous
// editor's link, and signs visitor in through it (the link's page, then
// its frame's login): the grain's and the share's IDs.
func (n *testNode) linkVisitor(t *testing.T, owner, visitor *web, app string) (grainID, shareID string) {
	t.Helper()
	ctx := context.Background()
	g, err := n.grains.NewGrain(ctx, owner.user(), app, "")
	if err != nil {
		t.Fatal(err)
	}
	sh, err := n.shares.New(ctx, owner.user(), g.ID, erg.ShareRequest{Role: "editor", Anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	code, page := visitor.get(strings.TrimPrefix(sh.URL, n.URL()))
	m := frameRe.FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("the link: %d, no frame", code)
	}
	if code, _ := visitor.get(html.UnescapeString(m[1])); code != http.StatusSeeOther {
		t.Fatalf("the visitor's login: %d", code)
	}
	return g.ID, sh.ID
}
