package node

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"

	"erg"
	"erg/webui"
)

// csrfFields are what any of the node's forms might read.
var csrfFields = map[string]string{"title": "pwned", "app": "echo", "role": "editor", "username": "eve", "label": "pwned",
	"code": "x", "password": "eve password", "password2": "eve password", "current": ownerPassword, "back": "/grains"}

// body builds a request body of one kind ("multipart", "urlencoded" or
// "json") holding fields, with the CSRF token first when csrf is set.
func csrfBody(kind, csrf string) (io.Reader, string) {
	switch kind {
	case "multipart":
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		if csrf != "" {
			mw.WriteField("csrf", csrf)
		}
		for k, v := range csrfFields {
			mw.WriteField(k, v)
		}
		fw, _ := mw.CreateFormFile("package", "x.erg")
		fw.Write([]byte("not a package"))
		mw.Close()
		return &buf, mw.FormDataContentType()
	case "urlencoded":
		f := url.Values{}
		for k, v := range csrfFields {
			f.Set(k, v)
		}
		if csrf != "" {
			f.Set("csrf", csrf)
		}
		return strings.NewReader(f.Encode()), "application/x-www-form-urlencoded"
	}
	m := map[string]string{}
	for k, v := range csrfFields {
		m[k] = v
	}
	if csrf != "" {
		m["csrf"] = csrf
	}
	data, _ := json.Marshal(m)
	return bytes.NewReader(data), "application/json"
}

// nodeState is what a forged request might change.
type nodeState struct {
	Grains  []string
	Shares  int
	Tokens  []string
	Users   []string
	Invites int
	Apps    int
	Friends int
}

func (n *testNode) state(t *testing.T, grainID string) nodeState {
	t.Helper()
	ctx := context.Background()
	owner := n.owner()
	var s nodeState
	gs, err := n.Grains(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		s.Grains = append(s.Grains, g.ID+" "+g.Title)
	}
	shares, _ := n.shares.List(ctx, owner, grainID)
	s.Shares = len(shares)
	toks, _ := n.accounts.APITokens(ctx, owner)
	for _, tk := range toks {
		s.Tokens = append(s.Tokens, tk.ID)
	}
	us, _ := n.accounts.Users(ctx, owner)
	for _, u := range us {
		s.Users = append(s.Users, u.Username)
	}
	invs, _ := n.accounts.Invites(ctx, owner)
	s.Invites = len(invs)
	apps, _ := n.installer.Apps(ctx)
	s.Apps = len(apps)
	fs, _ := n.friends.Friends(ctx, owner)
	s.Friends = len(fs)
	return s
}

// TestEveryStateChangeNeedsCSRFAndSameOrigin walks the shell's own route
// table, so a page added later is covered too: every POST, with a
// multipart, urlencoded or JSON body, is refused from another origin (a
// same-site page on another port, a grain) and without the session's
// token, before it changes anything. Multipart is refused (415) wherever
// no upload is expected, even with the token. The JSON API refuses a
// session's call without the X-CSRF-Token header, a token in the body
// notwithstanding.
func TestEveryStateChangeNeedsCSRFAndSameOrigin(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	ctx := context.Background()
	g, err := n.grains.NewGrain(ctx, n.owner(), "echo", "before")
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := n.shares.New(ctx, n.owner(), g.ID, erg.ShareRequest{Role: "editor"})
	inv, _ := n.accounts.InviteUser(ctx, n.owner(), "bob")
	tok, _ := n.accounts.NewAPIToken(ctx, n.owner(), "laptop")
	n.join(t, "carol")
	before := n.state(t, g.ID)

	fill := func(pattern string) string {
		p := pattern
		for _, r := range []struct{ prefix, id string }{
			{"/grains/{id}", g.ID}, {"/shares/{id}", sh.ID}, {"/apps/{id}", "echo"}, {"/invites/{id}", inv.ID},
			{"/settings/tokens/{id}", tok.ID}, {"/store/apps/{id}", "echo"}, {"/api/grains/{id}", g.ID},
			{"/api/shares/{id}", sh.ID}, {"/api/apps/{id}", "echo"}, {"/api/invites/{id}", inv.ID},
			{"/api/tokens/{id}", tok.ID}, {"/api/store/apps/{id}", "echo"},
		} {
			if strings.HasPrefix(p, r.prefix) {
				p = strings.Replace(p, "{id}", r.id, 1)
				break
			}
		}
		p = strings.ReplaceAll(p, "{name}", "carol")
		p = strings.ReplaceAll(p, "{token}", strings.TrimPrefix(inv.URL[strings.LastIndex(inv.URL, "/"):], "/"))
		return strings.TrimSuffix(p, "{$}")
	}
	send := func(method, path, kind, csrf string, hdr ...string) int {
		t.Helper()
		body, ctype := csrfBody(kind, csrf)
		req, _ := http.NewRequest(method, n.URL()+path, body)
		req.Header.Set("Content-Type", ctype)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		code, _, _ := alice.do(req)
		return code
	}
	origins := []struct {
		name string
		hdr  []string
	}{
		{"a page on another port", []string{"Sec-Fetch-Site", "same-site", "Origin", "http://localhost:9999"}},
		{"a grain", []string{"Sec-Fetch-Site", "same-site", "Origin", n.grainOrigin("xyz")}},
		{"an old browser on another port", []string{"Origin", "http://localhost:9999"}},
		{"an old browser on a grain", []string{"Origin", n.grainOrigin("xyz")}},
	}
	kinds := []string{"multipart", "urlencoded", "json"}

	routes := webui.NewHandler(webui.Services{Node: n.Node, Accounts: n.accounts, Store: n.store}, webui.Options{Domain: n.cfg.Domain}, nil).Routes()
	checked := 0
	for _, r := range routes {
		method, pattern, _ := strings.Cut(r.Pattern, " ")
		if method == http.MethodGet || method == http.MethodHead {
			continue
		}
		path := fill(pattern)
		checked++
		for _, kind := range kinds {
			// From another origin, even with the right token.
			for _, o := range origins {
				if code := send(method, path, kind, alice.csrf, o.hdr...); code != http.StatusForbidden {
					t.Errorf("%s from %s, %s with the token: %d, want 403", r.Pattern, o.name, kind, code)
				}
				if code := send(method, path, kind, "", o.hdr...); code != http.StatusForbidden {
					t.Errorf("%s from %s, %s without a token: %d, want 403", r.Pattern, o.name, kind, code)
				}
			}
			// A multipart body where no upload is expected, or another
			// body where one is, is refused whatever it holds.
			if (kind == "multipart") != r.Upload {
				if code := send(method, path, kind, alice.csrf, "Sec-Fetch-Site", "same-origin"); code != http.StatusUnsupportedMediaType {
					t.Errorf("%s, %s with the token: %d, want 415", r.Pattern, kind, code)
				}
			}
			if !r.SignedIn {
				continue // the sign-in forms have no session, so no token
			}
			want := http.StatusForbidden
			if (kind == "multipart") != r.Upload {
				want = http.StatusUnsupportedMediaType
			}
			if code := send(method, path, kind, "", "Sec-Fetch-Site", "same-origin"); code != want {
				t.Errorf("%s from the shell, %s without a token: %d, want %d", r.Pattern, kind, code, want)
			}
			if code := send(method, path, kind, "forged", "Sec-Fetch-Site", "same-origin"); code != want {
				t.Errorf("%s from the shell, %s with a forged token: %d, want %d", r.Pattern, kind, code, want)
			}
		}
	}
	if checked < 20 {
		t.Errorf("only %d state-changing routes in the table", checked)
	}

	// The JSON API: a session's call needs the header; a token in the
	// body does not count, whatever the body's type.
	api := []string{"POST /api/me/password", "POST /api/apps", "DELETE /api/apps/{id}", "POST /api/grains",
		"POST /api/grains/restore", "PATCH /api/grains/{id}", "POST /api/grains/{id}/open", "DELETE /api/grains/{id}",
		"POST /api/grains/{id}/shares", "DELETE /api/shares/{id}", "DELETE /api/users/{name}", "POST /api/invites",
		"DELETE /api/invites/{id}", "POST /api/tokens", "DELETE /api/tokens/{id}", "POST /api/store/publish",
		"POST /api/store/apps/{id}/install", "POST /api/friends/invite", "POST /api/friends", "DELETE /api/friends/{name}"}
	for _, route := range api {
		method, pattern, _ := strings.Cut(route, " ")
		path := fill(pattern)
		for _, kind := range kinds {
			if code := send(method, path, kind, alice.csrf, "Sec-Fetch-Site", "same-origin"); code != http.StatusForbidden {
				t.Errorf("%s with a session, %s with the token in the body: %d, want 403", route, kind, code)
			}
			for _, o := range origins {
				if code := send(method, path, kind, "", append([]string{"X-CSRF-Token", alice.csrf}, o.hdr...)...); code != http.StatusForbidden {
					t.Errorf("%s with a session from %s, %s: %d, want 403", route, o.name, kind, code)
				}
			}
		}
	}

	if after := n.state(t, g.ID); !reflect.DeepEqual(after, before) {
		t.Errorf("refused requests changed the node:\nbefore %+v\nafter  %+v", before, after)
	}
	// Alice is still signed in (the refused logouts did nothing), and a
	// proper request works.
	if code, _ := alice.post("/grains/"+g.ID+"/rename", url.Values{"title": {"after"}}, "Sec-Fetch-Site", "same-origin"); code != http.StatusSeeOther {
		t.Errorf("a proper rename: %d", code)
	}
	if gr, _ := n.Grain(ctx, n.owner(), g.ID); gr.Title != "after" {
		t.Errorf("title after a proper rename: %q", gr.Title)
	}
}

// TestConcurrentLoginsAreLimited: 200 wrong passwords at once get at most
// the per-account limit checked; the rest are refused as too many.
func TestConcurrentLoginsAreLimited(t *testing.T) {
	// All 200 come from one address: lift the connection caps, which
	// would otherwise refuse most of them before the limiter is asked.
	n := startNode(t, func(c *Config) { c.MaxConns, c.MaxConnsPerIP = -1, -1 })
	n.setUp(t)
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			c := n.newClient()
			c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := c.PostForm(n.URL()+"/login", url.Values{"username": {"alice"}, "password": {"wrong"}})
			code := 0
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				code = resp.StatusCode
			}
			mu.Lock()
			codes[code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if codes[http.StatusUnauthorized] > 5 || codes[http.StatusUnauthorized]+codes[http.StatusTooManyRequests] != 200 {
		t.Errorf("200 concurrent wrong passwords: %v; want at most 5 checked (401), the rest 429", codes)
	}
	// The right password is locked out too now.
	w := n.webClient(t)
	if code, _ := w.post("/login", url.Values{"username": {"alice"}, "password": {ownerPassword}}); code != http.StatusTooManyRequests {
		t.Errorf("the right password after the burst: %d, want 429", code)
	}
}

// TestLoginRedirectStaysOnTheNode: next= may only name a local path, on
// the login page for a signed-in user and after signing in.
func TestLoginRedirectStaysOnTheNode(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	cases := []struct{ next, want string }{
		{"/grains/abc?x=1", "/grains/abc?x=1"},
		{"/settings", "/settings"},
		{"//evil.example/x", "/grains"},
		{"/\\evil.example/x", "/grains"},
		{"/\t/evil.example/x", "/grains"},
		{"/\n/evil.example/x", "/grains"},
		{"/%09/evil.example/x", "/grains"},
		{"/%0a/evil.example", "/grains"},
		{"https://evil.example/", "/grains"},
		{"javascript:alert(1)", "/grains"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", n.URL()+"/login?next="+url.QueryEscape(c.next), nil)
		code, _, hdr := alice.do(req)
		if code != http.StatusSeeOther || hdr.Get("Location") != c.want {
			t.Errorf("GET /login?next=%q signed in: %d to %q, want %q", c.next, code, hdr.Get("Location"), c.want)
		}
	}
	// The raw query the attack used, unescaped by hand.
	req, _ := http.NewRequest("GET", n.URL()+"/login?next=/%09/evil.example/x", nil)
	if _, _, hdr := alice.do(req); hdr.Get("Location") != "/grains" {
		t.Errorf("GET /login?next=/%%09/evil.example/x: to %q", hdr.Get("Location"))
	}
	for _, c := range cases {
		w := n.webClient(t)
		form := url.Values{"username": {"alice"}, "password": {ownerPassword}, "next": {c.next}}
		req, _ := http.NewRequest("POST", n.URL()+"/login", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		code, _, hdr := w.do(req)
		if code != http.StatusSeeOther || hdr.Get("Location") != c.want {
			t.Errorf("POST /login with next=%q: %d to %q, want %q", c.next, code, hdr.Get("Location"), c.want)
		}
	}
}
