package node

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"erg"
)

// apiCall is one request to the node's API origin the way curl makes it:
// no cookie jar, the token in a header.
type apiCall struct {
	t    *testing.T
	n    *testNode
	c    *http.Client // nil: a fresh cookie-less client
	auth func(*http.Request)
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func (n *testNode) apiOrigin() string {
	_, port, _ := net.SplitHostPort(n.Addr())
	return "http://api.localhost:" + port
}

func (a apiCall) do(method, path, body string, hdr ...string) (int, string, http.Header) {
	a.t.Helper()
	c := a.c
	if c == nil {
		addr := a.n.Addr()
		c = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}}, Timeout: 30 * time.Second}
	}
	req, err := http.NewRequest(method, a.n.apiOrigin()+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	if a.auth != nil {
		a.auth(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (n *testNode) grainToken(grain, role, forUser string) erg.GrainToken {
	n.t.Helper()
	tok, err := n.tokens.New(context.Background(), n.owner(), grain, erg.GrainTokenRequest{Role: role, ForUser: forUser})
	if err != nil {
		n.t.Fatal(err)
	}
	return tok
}

// A viewer token reads a to-do list through the API origin and cannot
// change it; an editor token can; Basic auth works as Bearer does; a
// token reaches its own grain only; revoking or a wrong token gets 401.
func TestGrainAPITokensReachTheirGrainWithTheirRole(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	a, _ := n.newGrain("todo")
	b, _ := n.newGrain("todo")
	viewer, editor, other := n.grainToken(a, "viewer", ""), n.grainToken(a, "editor", ""), n.grainToken(b, "editor", "")
	if !strings.HasPrefix(viewer.URL, "http://api.localhost:") {
		t.Errorf("token URL %q", viewer.URL)
	}

	ed := apiCall{t: t, n: n, auth: bearer(editor.Token)}
	if code, body, _ := ed.do("POST", "/items", `{"text":"buy milk"}`); code != http.StatusCreated {
		t.Fatalf("editor adds an item: %d %s", code, body)
	}
	vw := apiCall{t: t, n: n, auth: bearer(viewer.Token)}
	code, body, hdr := vw.do("GET", "/items", "")
	if code != 200 || !strings.Contains(body, "buy milk") {
		t.Fatalf("viewer reads: %d %s", code, body)
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "sandbox") {
		t.Errorf("API answer CSP %q", csp)
	}
	if code, body, _ := vw.do("POST", "/items", `{"text":"defaced"}`); code != http.StatusForbidden {
		t.Errorf("viewer writes: %d %s", code, body)
	}
	if code, _, _ := vw.do("DELETE", "/items/1", ""); code != http.StatusForbidden {
		t.Errorf("viewer deletes: %d", code)
	}
	basic := apiCall{t: t, n: n, auth: func(r *http.Request) { r.SetBasicAuth("calendar-app", viewer.Token) }}
	if code, body, _ := basic.do("GET", "/items", ""); code != 200 || !strings.Contains(body, "buy milk") {
		t.Errorf("basic auth: %d %s", code, body)
	}
	// The other grain's token sees the other grain, where nothing was added.
	if code, body, _ := (apiCall{t: t, n: n, auth: bearer(other.Token)}).do("GET", "/items", ""); code != 200 || strings.Contains(body, "buy milk") {
		t.Errorf("grain B's token: %d %s", code, body)
	}

	for name, auth := range map[string]func(*http.Request){
		"no token":        nil,
		"wrong token":     bearer("ergapi_" + strings.Repeat("A", 43)),
		"a node API one":  bearer("erg_" + strings.Repeat("A", 43)),
		"basic, no token": func(r *http.Request) { r.SetBasicAuth(viewer.Token, "") },
		"not bearer":      func(r *http.Request) { r.Header.Set("Authorization", "Token "+viewer.Token) },
	} {
		code, _, hdr := (apiCall{t: t, n: n, auth: auth}).do("GET", "/items", "")
		if code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: %d (WWW-Authenticate %q), want 401 with a Basic challenge", name, code, hdr.Get("WWW-Authenticate"))
		}
	}
	if code, _, _ := vw.do("GET", "/../", ""); code != http.StatusBadRequest {
		t.Errorf("a path out of apiPath: %d", code)
	}

	if err := n.tokens.Revoke(context.Background(), n.owner(), viewer.ID); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := vw.do("GET", "/items", ""); code != http.StatusUnauthorized {
		t.Errorf("revoked token: %d, want 401", code)
	}
	if code, _, _ := ed.do("GET", "/items", ""); code != 200 {
		t.Errorf("the other token of the grain after one was revoked: %d", code)
	}

	// curl itself, where the machine has it, with Basic auth as DAV
	// clients send it.
	if curl, err := exec.LookPath("curl"); err == nil {
		_, port, _ := net.SplitHostPort(n.Addr())
		out, err := exec.Command(curl, "-sS", "-u", "me:"+editor.Token, "--resolve", "api.localhost:"+port+":127.0.0.1",
			"-w", "\n%{http_code}", n.apiOrigin()+"/items").CombinedOutput()
		if err != nil || !strings.HasSuffix(string(out), "\n200") || !strings.Contains(string(out), "buy milk") {
			t.Errorf("curl: %v\n%s", err, out)
		}
	}
}

// What the grain is told of a token's request: its role's permissions, no
// name (or the user it was made for, as that user's sessions are told),
// and nothing of the client's cookies, credentials or identity headers.
// A signed-in browser's cookies buy nothing on the API origin.
func TestTheAPIOriginTakesNoCookiesAndSetsIdentity(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	_, browserView := n.get(origin + "/headers")
	var fromBrowser http.Header
	json.Unmarshal([]byte(browserView), &fromBrowser)

	// The test client holds the grain's session cookie; on the API origin
	// it is not credentials, and without a token nothing passes.
	browser := apiCall{t: t, n: n, c: n.http}
	n.http.Jar.SetCookies(mustURL(t, n.apiOrigin()), []*http.Cookie{{Name: "erg_grain", Value: "x"}, {Name: "erg_session", Value: "y"}})
	if code, _, _ := browser.do("GET", "/headers", ""); code != http.StatusUnauthorized {
		t.Errorf("cookies without a token: %d, want 401", code)
	}

	anon := n.grainToken(id, "editor", "")
	code, body, hdr := (apiCall{t: t, n: n, c: n.http, auth: bearer(anon.Token)}).do("GET", "/headers", "",
		"X-Erg-Username", "forged", "X-Sandstorm-Permissions", "admin", "Cookie", "erg_session=stolen")
	if code != 200 {
		t.Fatalf("token: %d %s", code, body)
	}
	var got http.Header
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Get("Cookie") != "" || got.Get("Authorization") != "" {
		t.Errorf("the grain got Cookie %q, Authorization %q", got.Get("Cookie"), got.Get("Authorization"))
	}
	if got.Get("X-Erg-Username") != "" || got.Get("X-Erg-User-Id") != "" || got.Get("X-Erg-Permissions") != "read,write" ||
		got.Get("X-Sandstorm-Permissions") != "read,write" || got.Get("X-Erg-Session-Id") == "" {
		t.Errorf("identity for a token made for no one: %v", got)
	}
	if hdr.Get("Set-Cookie") != "" {
		t.Errorf("the API origin set a cookie: %q", hdr.Get("Set-Cookie"))
	}

	mine := n.grainToken(id, "editor", "alice")
	_, body, _ = (apiCall{t: t, n: n, auth: bearer(mine.Token)}).do("GET", "/headers", "")
	json.Unmarshal([]byte(body), &got)
	if got.Get("X-Erg-Username") != "alice" || got.Get("X-Erg-User-Id") != fromBrowser.Get("X-Erg-User-Id") || fromBrowser.Get("X-Erg-User-Id") == "" {
		t.Errorf("a token made for alice: %q %q, her browser session: %q", got.Get("X-Erg-Username"), got.Get("X-Erg-User-Id"), fromBrowser.Get("X-Erg-User-Id"))
	}

	// An app that declares no apiPath takes no tokens.
	g, err := n.grains.NewGrain(context.Background(), n.owner(), "probe", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.tokens.New(context.Background(), n.owner(), g.ID, erg.GrainTokenRequest{Role: "editor"}); err == nil || !strings.Contains(err.Error(), "apiPath") {
		t.Errorf("a token for an app without an API: %v", err)
	}
}

// Bad tokens from one address are limited: past the allowance every
// request from it gets 429, a good token included, while the node's pages
// keep working.
func TestGrainAPITokenGuessingIsRateLimited(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, _ := n.newGrain("echo")
	good := n.grainToken(id, "editor", "")
	guess := apiCall{t: t, n: n, auth: bearer("ergapi_guess")}
	limited := 0
	for range 40 {
		code, _, _ := guess.do("GET", "/", "")
		if code == http.StatusTooManyRequests {
			limited++
		} else if code != http.StatusUnauthorized {
			t.Fatalf("a guess: %d", code)
		}
	}
	if limited == 0 || limited > 25 {
		t.Errorf("%d of 40 guesses limited", limited)
	}
	if code, _, hdr := (apiCall{t: t, n: n, auth: bearer(good.Token)}).do("GET", "/", ""); code != http.StatusTooManyRequests || hdr.Get("Retry-After") == "" {
		t.Errorf("a good token from the guessing address: %d", code)
	}
	if code, _ := n.get(n.URL() + "/login"); code != 200 {
		t.Errorf("the node's pages while the API origin limits: %d", code)
	}
}

// The CLI makes, lists and revokes grain tokens.
func TestCLIGrainTokens(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, _ := n.newGrain("todo")
	c := erg.NewClient(SocketPath(n.cfg.DataDir))
	ctx := context.Background()
	tok, err := c.NewGrainToken(ctx, id, erg.GrainTokenRequest{Role: "viewer", Label: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NewGrainToken(ctx, id, erg.GrainTokenRequest{Role: "root"}); erg.KindOf(err) != erg.Invalid {
		t.Errorf("a role the app lacks: %v", err)
	}
	list, err := c.GrainTokens(ctx, id)
	if err != nil || len(list) != 1 || list[0].Token != "" || list[0].Label != "phone" {
		t.Fatalf("list: %+v %v", list, err)
	}
	if code, _, _ := (apiCall{t: t, n: n, auth: bearer(tok.Token)}).do("GET", "/items", ""); code != 200 {
		t.Errorf("made over the socket: %d", code)
	}
	if err := c.RevokeGrainToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeGrainToken(ctx, tok.ID); erg.KindOf(err) != erg.NotFound {
		t.Errorf("revoked twice: %v", err)
	}
}

// The share dialog makes a token, shows its secret once, lists it without
// the secret, and revokes it.
func TestShareDialogMakesAndRevokesGrainTokens(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	w := n.setUp(t)
	g, err := n.grains.NewGrain(context.Background(), w.user(), "todo", "Chores")
	if err != nil {
		t.Fatal(err)
	}
	code, body := w.get("/grains/" + g.ID + "?share=1")
	if code != 200 || !strings.Contains(body, "API tokens") || !strings.Contains(body, n.apiOrigin()) {
		t.Fatalf("share dialog: %d, API tokens section or origin missing", code)
	}
	code, body = w.post("/grains/"+g.ID+"/tokens", url.Values{"role": {"viewer"}, "label": {"phone"}, "expires": {"0"}})
	if code != 200 {
		t.Fatalf("make token: %d %s", code, body)
	}
	m := regexp.MustCompile(`value="(ergapi_[^"]+)"`).FindStringSubmatch(body)
	if m == nil {
		t.Fatal("the new token's secret is not shown")
	}
	if code, _, _ := (apiCall{t: t, n: n, auth: bearer(m[1])}).do("GET", "/items", ""); code != 200 {
		t.Errorf("the dialog's token: %d", code)
	}
	_, body = w.get("/grains/" + g.ID + "?share=1")
	if strings.Contains(body, m[1]) || !strings.Contains(body, "phone") {
		t.Error("the dialog shows the secret again, or not the token")
	}
	if code, _ := w.post("/grains/"+g.ID+"/tokens", url.Values{"role": {"root"}}); code != http.StatusBadRequest {
		t.Errorf("a role the app lacks: %d", code)
	}
	tid := regexp.MustCompile(`data-token="([^"]+)"`).FindStringSubmatch(body)
	if tid == nil {
		t.Fatal("token not listed")
	}
	if code, _ := w.post("/grain-tokens/"+tid[1]+"/revoke", url.Values{"grain": {g.ID}}); code != http.StatusSeeOther {
		t.Errorf("revoke: %d", code)
	}
	if code, _, _ := (apiCall{t: t, n: n, auth: bearer(m[1])}).do("GET", "/items", ""); code != http.StatusUnauthorized {
		t.Errorf("revoked in the dialog: %d", code)
	}
	// Someone else cannot revoke the owner's tokens.
	other := n.grainToken(g.ID, "viewer", "")
	bob := n.join(t, "bob")
	if code, _ := bob.post("/grain-tokens/"+other.ID+"/revoke", url.Values{"grain": {g.ID}}); code != http.StatusNotFound {
		t.Errorf("bob revokes: %d", code)
	}
}
