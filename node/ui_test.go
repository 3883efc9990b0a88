package node

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"html"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"erg"
	"erg/db"
)

func TestEveryRouteNeedsASession(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	g, err := n.grains.NewGrain(context.Background(), n.owner(), "echo", "")
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := n.shares.New(context.Background(), n.owner(), g.ID, erg.ShareRequest{Role: "editor"})
	inv, _ := n.accounts.InviteUser(context.Background(), n.owner(), "bob")
	stranger := n.webClient(t)
	stranger.csrf = alice.csrf // knowing a token is not enough without the session
	pages := []string{"/grains", "/grains/" + g.ID, "/grains/" + g.ID + "/delete", "/grains/" + g.ID + "/backup",
		"/apps", "/apps/echo/icon", "/users", "/users/bob/remove", "/users/grains/" + g.ID + "/delete", "/settings"}
	for _, p := range pages {
		code, _ := stranger.get(p)
		if code != http.StatusSeeOther {
			t.Errorf("GET %s without a session: %d, want a redirect to sign in", p, code)
		}
	}
	posts := []string{"/logout", "/grains", "/grains/restore", "/grains/" + g.ID + "/rename", "/grains/" + g.ID + "/delete",
		"/grains/" + g.ID + "/shares", "/shares/" + sh.ID + "/revoke", "/apps", "/apps/echo/remove",
		"/users/invite", "/users/bob/remove", "/users/grains/" + g.ID + "/delete", "/invites/" + inv.ID + "/cancel",
		"/settings/password", "/settings/tokens", "/settings/tokens/x/revoke"}
	for _, p := range posts {
		if code, _ := stranger.post(p, url.Values{"title": {"x"}, "app": {"echo"}, "role": {"viewer"}, "username": {"eve"}}); code != http.StatusUnauthorized {
			t.Errorf("POST %s without a session: %d, want 401", p, code)
		}
	}
	api := []string{"GET /api/status", "GET /api/me", "POST /api/me/password", "GET /api/apps", "POST /api/apps", "DELETE /api/apps/echo",
		"GET /api/grains", "GET /api/grains?all=1", "POST /api/grains", "POST /api/grains/restore", "GET /api/grains/" + g.ID, "PATCH /api/grains/" + g.ID,
		"POST /api/grains/" + g.ID + "/open", "DELETE /api/grains/" + g.ID, "GET /api/grains/" + g.ID + "/log",
		"GET /api/grains/" + g.ID + "/backup", "GET /api/grains/" + g.ID + "/shares", "POST /api/grains/" + g.ID + "/shares",
		"DELETE /api/shares/" + sh.ID, "GET /api/users", "DELETE /api/users/bob", "GET /api/invites", "POST /api/invites",
		"DELETE /api/invites/" + inv.ID, "GET /api/tokens", "POST /api/tokens", "DELETE /api/tokens/x",
		"POST /api/store/publish", "GET /api/store/search", "GET /api/store/apps/x", "GET /api/store/updates",
		"POST /api/store/apps/x/install"}
	for _, route := range api {
		method, path, _ := strings.Cut(route, " ")
		if code, body := stranger.api(method, path, map[string]string{}); code != http.StatusUnauthorized {
			t.Errorf("%s without a session: %d %s, want 401", route, code, body)
		}
		req, _ := http.NewRequest(method, n.URL()+path, nil)
		req.Header.Set("Authorization", "Bearer erg_forged")
		if code, _, _ := stranger.do(req); code != http.StatusUnauthorized {
			t.Errorf("%s with a forged token: %d, want 401", route, code)
		}
	}
	// Nothing happened.
	if _, err := n.grains.Lookup(g.ID); err != nil {
		t.Error("the grain is gone")
	}
	if gs, _ := n.Grains(context.Background(), n.owner()); len(gs) != 1 || gs[0].Title != g.Title {
		t.Errorf("grains after the strangers: %+v", gs)
	}
}

func TestUsersCannotReachEachOthersGrains(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	bob := n.join(t, "bob")
	ctx := context.Background()
	ag, err := n.grains.NewGrain(ctx, alice.user(), "echo", "alice's")
	if err != nil {
		t.Fatal(err)
	}
	sh, _ := n.shares.New(ctx, alice.user(), ag.ID, erg.ShareRequest{Role: "editor"})
	bg, _ := n.grains.NewGrain(ctx, bob.user(), "echo", "bob's")

	for _, c := range []struct {
		method, path string
		body         any
	}{
		{"GET", "/api/grains/" + ag.ID, nil},
		{"PATCH", "/api/grains/" + ag.ID, map[string]string{"title": "mine now"}},
		{"POST", "/api/grains/" + ag.ID + "/open", nil},
		{"DELETE", "/api/grains/" + ag.ID, nil},
		{"GET", "/api/grains/" + ag.ID + "/log", nil},
		{"GET", "/api/grains/" + ag.ID + "/backup", nil},
		{"GET", "/api/grains/" + ag.ID + "/shares", nil},
		{"POST", "/api/grains/" + ag.ID + "/shares", map[string]string{"role": "editor"}},
		{"DELETE", "/api/shares/" + sh.ID, nil},
	} {
		if code, body := bob.api(c.method, c.path, c.body); code != http.StatusNotFound {
			t.Errorf("bob: %s %s = %d %s, want 404", c.method, c.path, code, body)
		}
	}
	for _, p := range []string{"/grains/" + ag.ID, "/grains/" + ag.ID + "/delete", "/grains/" + ag.ID + "/backup"} {
		if code, _ := bob.get(p); code != http.StatusNotFound {
			t.Errorf("bob: GET %s = %d, want 404", p, code)
		}
	}
	for _, p := range []string{"/grains/" + ag.ID + "/rename", "/grains/" + ag.ID + "/delete", "/grains/" + ag.ID + "/shares", "/shares/" + sh.ID + "/revoke"} {
		if code, _ := bob.post(p, url.Values{"title": {"x"}, "role": {"editor"}}); code != http.StatusNotFound {
			t.Errorf("bob: POST %s = %d, want 404", p, code)
		}
	}
	// Owning the node is not owning bob's grains.
	if code, _ := alice.api("GET", "/api/grains/"+bg.ID, nil); code != http.StatusNotFound {
		t.Errorf("alice opened bob's grain: %d", code)
	}
	// Lists hold only one's own.
	_, body := bob.api("GET", "/api/grains", nil)
	if strings.Contains(body, ag.ID) || !strings.Contains(body, bg.ID) {
		t.Errorf("bob's list: %s", body)
	}
	// Bob's only admin rights are none.
	for _, c := range []struct{ method, path string }{{"GET", "/api/users"}, {"POST", "/api/invites"}, {"DELETE", "/api/users/alice"},
		{"GET", "/api/status"}, {"POST", "/api/apps"}, {"DELETE", "/api/apps/echo"},
		{"POST", "/api/store/publish"}, {"POST", "/api/store/apps/x/install"}} {
		if code, _ := bob.api(c.method, c.path, map[string]string{"username": "eve"}); code != http.StatusForbidden && code != http.StatusBadRequest {
			t.Errorf("bob: %s %s = %d, want 403", c.method, c.path, code)
		}
	}
	if code, _ := bob.get("/users"); code != http.StatusForbidden {
		t.Errorf("bob: /users = %d", code)
	}
	// A grain session is good for its own grain only.
	bobOpen, _ := n.OpenGrain(ctx, bob.user(), bg.ID)
	resp, err := bob.c.Get(bobOpen.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var session string
	for _, c := range bob.c.Jar.Cookies(mustURL(t, strings.Split(bobOpen.URL, "/_erg")[0])) {
		if c.Name == "erg_grain" {
			session = c.Value
		}
	}
	if session == "" {
		t.Fatal("bob got no grain session")
	}
	aliceOrigin := n.grainOrigin(ag.ID)
	req, _ := http.NewRequest("GET", aliceOrigin+"/read", nil)
	req.AddCookie(&http.Cookie{Name: "erg_grain", Value: session})
	if code, _, _ := n.webClient(t).do(req); code != http.StatusForbidden {
		t.Errorf("bob's grain session on alice's grain: %d, want 403", code)
	}
	if got, _ := n.Grain(ctx, alice.user(), ag.ID); got.Title != "alice's" {
		t.Errorf("alice's grain is now %q", got.Title)
	}
}

func TestStateChangesNeedCSRFAndSameOrigin(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	before, _ := n.Grains(context.Background(), alice.user())
	form := url.Values{"app": {"echo"}}
	cases := []struct {
		name string
		csrf string
		hdr  []string
	}{
		{"no token", "", nil},
		{"a wrong token", "forged", nil},
		{"a grain's origin", alice.csrf, []string{"Sec-Fetch-Site", "same-site", "Origin", n.grainOrigin("abc")}},
		{"another site", alice.csrf, []string{"Sec-Fetch-Site", "cross-site", "Origin", "http://evil.example"}},
		{"an old browser from another site", alice.csrf, []string{"Origin", "http://evil.example"}},
	}
	for _, c := range cases {
		f := url.Values{"app": form["app"], "csrf": {c.csrf}}
		if code, _ := alice.post("/grains", f, c.hdr...); code != http.StatusForbidden {
			t.Errorf("POST /grains with %s: %d, want 403", c.name, code)
		}
	}
	// The API on the web port wants the header for a session...
	req, _ := http.NewRequest("POST", n.URL()+"/api/grains", strings.NewReader(`{"app":"echo"}`))
	if code, _, _ := alice.do(req); code != http.StatusForbidden {
		t.Errorf("API POST with a session and no CSRF header: %d, want 403", code)
	}
	// ...and sign-in forms refuse other origins too (login CSRF).
	if code, _ := n.webClient(t).post("/login", url.Values{"username": {"alice"}, "password": {ownerPassword}},
		"Sec-Fetch-Site", "cross-site"); code != http.StatusForbidden {
		t.Errorf("a cross-site login: %d, want 403", code)
	}
	if after, _ := n.Grains(context.Background(), alice.user()); len(after) != len(before) {
		t.Errorf("%d grains made by refused requests", len(after)-len(before))
	}
	// The same request with the token from the same origin works.
	if code, _ := alice.post("/grains", form, "Sec-Fetch-Site", "same-origin"); code != http.StatusSeeOther {
		t.Errorf("a proper POST: %d", code)
	}
}

func TestLoginIsRateLimited(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	n.setUp(t)
	w := n.webClient(t)
	for i := range 5 {
		if code, _ := w.post("/login", url.Values{"username": {"alice"}, "password": {"wrong"}}); code != http.StatusUnauthorized {
			t.Fatalf("wrong password %d: %d", i, code)
		}
	}
	code, body := w.post("/login", url.Values{"username": {"alice"}, "password": {ownerPassword}})
	if code != http.StatusTooManyRequests || !strings.Contains(body, "Too many") {
		t.Errorf("the right password after 5 failures: %d, want 429", code)
	}
	// Another account from the same address is not locked by alice's.
	if code, _ := w.post("/login", url.Values{"username": {"bob"}, "password": {"x"}}); code != http.StatusUnauthorized {
		t.Errorf("another username: %d, want 401", code)
	}
	// Setup is closed once done, and never opens without its token.
	if code, _ := n.webClient(t).post("/setup", url.Values{"token": {"x"}, "username": {"mallory"}, "password": {"mallory pw"}, "password2": {"mallory pw"}}); code != http.StatusForbidden {
		t.Errorf("setup again: %d, want 403", code)
	}
}

func TestUserLifecycle(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	ctx := context.Background()
	inv, err := n.accounts.InviteUser(ctx, alice.user(), "bob")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.accounts.InviteUser(ctx, alice.user(), "BOB"); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("inviting bob twice: %v", err)
	}
	bob := n.webClient(t)
	path := strings.TrimPrefix(inv.URL, n.URL())
	if code, _ := bob.post(path, url.Values{"password": {"short"}, "password2": {"short"}}); code != http.StatusBadRequest {
		t.Errorf("a short password: %d", code)
	}
	if code, _ := bob.post(path, url.Values{"password": {"bob password"}, "password2": {"bob password"}}); code != http.StatusSeeOther {
		t.Fatalf("joining: %d", code)
	}
	if code, _ := n.webClient(t).post(path, url.Values{"password": {"other pw 123"}, "password2": {"other pw 123"}}); code != http.StatusNotFound {
		t.Errorf("a used invite: %d, want 404", code)
	}
	bob.get("/grains")
	again := n.webClient(t)
	again.login("bob", "bob password")
	if u := again.user(); u.Username != "bob" || u.Owner {
		t.Errorf("signed in as %+v", u)
	}
	g, _ := n.grains.NewGrain(ctx, bob.user(), "echo", "bob's")
	open, _ := n.OpenGrain(ctx, bob.user(), g.ID)
	resp, err := bob.c.Get(open.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if code, _ := bob.get(n.grainOrigin(g.ID) + "/headers"); code != 200 {
		t.Fatalf("bob's grain: %d", code)
	}
	// Removing bob ends his sessions and deletes his grains.
	if err := n.RemoveUser(ctx, alice.user(), "bob"); err != nil {
		t.Fatal(err)
	}
	if code, _ := bob.get("/grains"); code != http.StatusSeeOther {
		t.Errorf("a removed user's page session: %d", code)
	}
	if code, _ := bob.get(n.grainOrigin(g.ID) + "/headers"); code != http.StatusNotFound {
		t.Errorf("a removed user's grain: %d, want 404", code)
	}
	if _, err := os.Stat(n.grains.Dir(g.ID)); !os.IsNotExist(err) {
		t.Errorf("bob's grain storage is still there: %v", err)
	}
	if err := n.RemoveUser(ctx, alice.user(), "alice"); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("removing the owner: %v", err)
	}
}

var frameRe = regexp.MustCompile(`<iframe class="grain" src="([^"]+)"`)

// TestPagesManageGrainsAppsAndIdentity covers the page forms the browser
// test does not: rename, delete after confirming, removing an app, and what
// a grain is told about who uses it through a share.
func TestPagesManageGrainsAppsAndIdentity(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	bob := n.join(t, "bob")
	ctx := context.Background()
	g, _ := n.grains.NewGrain(ctx, alice.user(), "echo", "first")

	if code, _ := alice.post("/grains/"+g.ID+"/rename", url.Values{"title": {"Renamed"}, "back": {"//evil.example"}}); code != http.StatusSeeOther {
		t.Errorf("rename: %d", code)
	}
	if got, _ := n.Grain(ctx, alice.user(), g.ID); got.Title != "Renamed" {
		t.Errorf("title after rename: %q", got.Title)
	}
	if code, body := alice.get("/grains/" + g.ID + "/delete"); code != 200 || !strings.Contains(body, "Delete “Renamed”") {
		t.Errorf("delete confirmation: %d", code)
	}

	// Identity through shares: an anonymous visitor has no name or id; a
	// user has both; both get the role's permissions.
	anon, _ := n.shares.New(ctx, alice.user(), g.ID, erg.ShareRequest{Role: "editor", Anonymous: true})
	headersVia := func(w *web, page string) http.Header {
		t.Helper()
		code, body := w.get(page)
		if code == http.StatusSeeOther {
			code, body = w.get("/grains/" + g.ID)
		}
		m := frameRe.FindStringSubmatch(body)
		if code != 200 || m == nil {
			t.Fatalf("%s: %d, no frame", page, code)
		}
		w.get(html.UnescapeString(m[1]))
		code, body = w.get(n.grainOrigin(g.ID) + "/headers")
		var h http.Header
		if code != 200 || json.Unmarshal([]byte(body), &h) != nil {
			t.Fatalf("headers: %d %s", code, body)
		}
		return h
	}
	h := headersVia(n.webClient(t), strings.TrimPrefix(anon.URL, n.URL()))
	if h.Get("X-Erg-Username") != "" || h.Get("X-Erg-User-Id") != "" || h.Get("X-Erg-Permissions") != "read,write" || h.Get("X-Erg-Session-Id") == "" {
		t.Errorf("an anonymous visitor as the grain sees them: %v", h)
	}
	h = headersVia(bob, strings.TrimPrefix(anon.URL, n.URL()))
	if h.Get("X-Erg-Username") != "bob" || len(h.Get("X-Erg-User-Id")) != 32 || h.Get("X-Erg-Permissions") != "read,write" {
		t.Errorf("bob as the grain sees him: %v", h)
	}
	gs, _ := n.Grains(ctx, bob.user())
	if len(gs) != 1 || gs[0].ID != g.ID || gs[0].Mine || gs[0].Owner != "alice" {
		t.Errorf("bob's grains after opening the link: %+v", gs)
	}
	if _, body := bob.get("/grains"); !strings.Contains(body, "Renamed") || !strings.Contains(body, "from alice") {
		t.Error("the grains page does not list the grain under Shared with me")
	}

	// An app with grains stays; without, it goes with its package tree.
	apps, _ := n.installer.Apps(ctx)
	if code, body := alice.post("/apps/echo/remove", nil); code != http.StatusBadRequest || !strings.Contains(body, "delete them first") {
		t.Errorf("removing an app in use: %d", code)
	}
	if code, _ := alice.post("/grains/"+g.ID+"/delete", nil); code != http.StatusSeeOther {
		t.Errorf("delete: %d", code)
	}
	if _, err := n.grains.Lookup(g.ID); err == nil {
		t.Error("the grain survived its deletion")
	}
	if gs, _ := n.Grains(ctx, bob.user()); len(gs) != 0 {
		t.Errorf("bob still has %+v", gs)
	}
	var tree string
	n.db.QueryRowContext(ctx, `SELECT tree FROM apps WHERE id = ?`, "echo").Scan(&tree)
	if code, _ := bob.post("/apps/echo/remove", nil); code != http.StatusForbidden {
		t.Errorf("bob removing an app: %d, want 403", code)
	}
	if code, _ := alice.post("/apps/echo/remove", nil); code != http.StatusSeeOther {
		t.Errorf("removing an unused app: %d", code)
	}
	if after, _ := n.installer.Apps(ctx); len(after) != len(apps)-1 {
		t.Errorf("%d apps after removing one of %d", len(after), len(apps))
	}
	if _, err := os.Stat(tree); !os.IsNotExist(err) {
		t.Errorf("the app's package tree is still there: %v", err)
	}
}

func TestSettingsChangePasswordAndTokens(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	other := n.webClient(t) // alice on another device
	other.login("alice", ownerPassword)
	alice.get("/settings")

	if code, body := alice.post("/settings/password", url.Values{"current": {"wrong"}, "password": {"new password 2"}, "password2": {"new password 2"}}); code != http.StatusForbidden || !strings.Contains(body, "current password is wrong") {
		t.Errorf("a wrong current password: %d", code)
	}
	if code, body := alice.post("/settings/password", url.Values{"current": {ownerPassword}, "password": {"new password 2"}, "password2": {"new password 2"}}); code != 200 || !strings.Contains(body, "password is changed") {
		t.Fatalf("change password: %d", code)
	}
	if code, _ := alice.get("/grains"); code != 200 {
		t.Errorf("the device that changed it is signed out: %d", code)
	}
	if code, _ := other.get("/grains"); code != http.StatusSeeOther {
		t.Errorf("another device is still signed in: %d", code)
	}
	if code, _ := n.webClient(t).post("/login", url.Values{"username": {"alice"}, "password": {ownerPassword}}); code != http.StatusUnauthorized {
		t.Errorf("the old password: %d, want 401", code)
	}
	n.webClient(t).login("alice", "new password 2")

	// A token made on the page works as a bearer token, until revoked.
	alice.get("/settings")
	code, body := alice.post("/settings/tokens", url.Values{"label": {"script"}})
	m := regexp.MustCompile(`value="(erg_[^"]+)"`).FindStringSubmatch(body)
	if code != http.StatusCreated || m == nil || m[1] == "" {
		t.Fatalf("new token: %d", code)
	}
	c := erg.NewHTTPClient(n.URL(), m[1], n.newClient())
	if _, err := c.Grains(context.Background()); err != nil {
		t.Fatalf("the token: %v", err)
	}
	toks, _ := n.accounts.APITokens(context.Background(), alice.user())
	if len(toks) != 1 || toks[0].Label != "script" {
		t.Fatalf("tokens: %+v", toks)
	}
	if code, _ := alice.post("/settings/tokens/"+toks[0].ID+"/revoke", nil); code != http.StatusSeeOther {
		t.Errorf("revoke: %d", code)
	}
	if _, err := c.Grains(context.Background()); !errors.Is(err, erg.ErrUnauthorized) {
		t.Errorf("a revoked token: %v", err)
	}
}

// TestMigrationKeepsGrainsWithTheOwner upgrades a database made before
// accounts: its grains become the owner's, and sessions that say nothing
// about who holds them are dropped.
func TestMigrationKeepsGrainsWithTheOwner(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "erg.db")
	sqldb, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{db.Migrations()[0], `PRAGMA user_version = 1`,
		`INSERT INTO apps VALUES ('echo', 'Echo', 1, '1', '{}', '/x', 0)`,
		`INSERT INTO grains VALUES ('g1', 'echo', 'old', 0, 0)`,
		`INSERT INTO grain_sessions VALUES ('h', 'g1', 0, 9999999999)`} {
		if _, err := sqldb.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	sqldb.Close()
	sqldb, err = db.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer sqldb.Close()
	var owner string
	var sessions, owners int
	sqldb.QueryRow(`SELECT owner_id FROM grains WHERE id = 'g1'`).Scan(&owner)
	sqldb.QueryRow(`SELECT count(*) FROM grain_sessions`).Scan(&sessions)
	sqldb.QueryRow(`SELECT count(*) FROM users WHERE id = 'owner' AND is_owner = 1 AND password_hash = ''`).Scan(&owners)
	if owner != ownerID || sessions != 0 || owners != 1 {
		t.Errorf("after the upgrade: grain owner %q, %d sessions, %d owner rows", owner, sessions, owners)
	}
}

func TestShellAnswersToItsOwnNameOnly(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	w := n.webClient(t)
	_, port, _ := net.SplitHostPort(n.Addr())
	req, _ := http.NewRequest("GET", "http://127.0.0.1:"+port+"/grains?x=1", nil)
	resp, err := w.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != n.URL()+"/grains?x=1" {
		t.Errorf("the shell by IP: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	// A page elsewhere that rebinds its own name to this node gets nothing.
	req, _ = http.NewRequest("GET", "http://rebind.example:"+port+"/setup", nil)
	if code, _, _ := w.do(req); code != http.StatusMisdirectedRequest {
		t.Errorf("a foreign host name: %d, want 421", code)
	}
}
