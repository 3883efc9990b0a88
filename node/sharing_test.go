package node

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"erg"
	"erg/grains"
)

func mustURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestShareLinksRefuseForgedExpiredAndForeign(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	bob := n.join(t, "bob")
	carol := n.join(t, "carol")
	ctx := context.Background()
	g, _ := n.grains.NewGrain(ctx, alice.user(), "echo", "")
	visitor := n.webClient(t)

	if code, _ := visitor.get("/s/" + strings.Repeat("A", 43)); code != http.StatusNotFound {
		t.Errorf("a forged link: %d, want 404", code)
	}
	if code, _ := bob.get("/s/not-a-token"); code != http.StatusNotFound {
		t.Errorf("a forged link, signed in: %d, want 404", code)
	}
	expiring, _ := n.shares.New(ctx, alice.user(), g.ID, erg.ShareRequest{Role: "editor", Anonymous: true, ExpiresIn: 60})
	path := strings.TrimPrefix(expiring.URL, n.URL())
	if code, _ := visitor.get(path); code != 200 {
		t.Fatalf("a fresh anonymous link: %d", code)
	}
	n.db.Exec(`UPDATE shares SET expires_at = 1 WHERE id = ?`, expiring.ID)
	if code, _ := n.webClient(t).get(path); code != http.StatusNotFound {
		t.Errorf("an expired link: %d, want 404", code)
	}
	// Sessions opened through it end with it, too.
	n.grains.Sessions().Drop(func(grains.Session) bool { return true })
	if code, _ := visitor.get(n.grainOrigin(g.ID) + "/read"); code != http.StatusForbidden {
		t.Logf("(visitor on the grain origin after expiry: %d)", code)
	}

	// A link for bob works for bob only, and needs signing in.
	forBob, _ := n.shares.New(ctx, alice.user(), g.ID, erg.ShareRequest{Role: "editor", ForUser: "bob"})
	path = strings.TrimPrefix(forBob.URL, n.URL())
	if code, _ := carol.get(path); code != http.StatusForbidden {
		t.Errorf("carol with bob's link: %d, want 403", code)
	}
	if code, _ := n.webClient(t).get(path); code != http.StatusSeeOther {
		t.Errorf("bob's link anonymously: %d, want a redirect to sign in", code)
	}
	if code, _ := bob.get(path); code != http.StatusSeeOther {
		t.Errorf("bob with his link: %d, want a redirect to the grain", code)
	}
	if gs, _ := n.Grains(ctx, carol.user()); len(gs) != 0 {
		t.Errorf("carol got %v", gs)
	}
	// A link without anonymous use needs a sign-in.
	signed, _ := n.shares.New(ctx, alice.user(), g.ID, erg.ShareRequest{Role: "editor"})
	if code, _ := n.webClient(t).get(strings.TrimPrefix(signed.URL, n.URL())); code != http.StatusSeeOther {
		t.Errorf("a sign-in link anonymously: %d", code)
	}
	// Roles come from the manifest only.
	if _, err := n.shares.New(ctx, alice.user(), g.ID, erg.ShareRequest{Role: "admin"}); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("a made-up role: %v", err)
	}
}

func TestCLIUsersSharesBackupsAndTokens(t *testing.T) {
	t.Parallel()
	p := startErg(t, filepath.Join(t.TempDir(), "data"))
	var g erg.Grain
	json.Unmarshal([]byte(p.erg(false, "grain", "new", "notes", "--json")), &g)
	if out := p.erg(false, "grain", "rename", g.ID, "Plans"); !strings.Contains(out, `"Plans"`) {
		t.Errorf("grain rename: %s", out)
	}
	var inv erg.Invite
	json.Unmarshal([]byte(p.erg(false, "user", "invite", "bob", "--json")), &inv)
	if !strings.Contains(inv.URL, "/invite/") {
		t.Errorf("user invite: %+v", inv)
	}
	if out := p.erg(false, "user", "ls"); !strings.Contains(out, "alice") || !strings.Contains(out, "bob") || !strings.Contains(out, "invited") {
		t.Errorf("user ls:\n%s", out)
	}
	if out := p.erg(true, "share", "new", g.ID, "--role", "boss"); !strings.Contains(out, `no role "boss"`) {
		t.Errorf("share new with a bad role: %s", out)
	}
	var sh erg.Share
	json.Unmarshal([]byte(p.erg(false, "share", "new", g.ID, "--role", "viewer", "--anonymous", "--expires", "24h", "--json")), &sh)
	if !strings.Contains(sh.URL, "/s/") || sh.Expires.IsZero() {
		t.Errorf("share new: %+v", sh)
	}
	if out := p.erg(false, "share", "ls", g.ID); !strings.Contains(out, sh.ID) || !strings.Contains(out, "anyone") {
		t.Errorf("share ls:\n%s", out)
	}
	p.erg(false, "share", "rm", sh.ID)
	if out := p.erg(false, "share", "ls", g.ID); strings.Contains(out, sh.ID) {
		t.Errorf("share ls after rm:\n%s", out)
	}
	zipFile := filepath.Join(t.TempDir(), "plans.zip")
	p.erg(false, "grain", "backup", g.ID, "-o", zipFile)
	var restored erg.Grain
	json.Unmarshal([]byte(p.erg(false, "grain", "restore", zipFile, "--json")), &restored)
	if restored.Title != "Plans" || restored.ID == g.ID {
		t.Errorf("grain restore: %+v", restored)
	}
	p.erg(false, "user", "rm", "bob")
	if out := p.erg(false, "user", "ls"); strings.Contains(out, "bob") {
		t.Errorf("user ls after rm:\n%s", out)
	}

	// The same API over HTTP with a token.
	var tok erg.APIToken
	if err := json.Unmarshal([]byte(p.erg(false, "token", "new", "--label", "laptop", "--json")), &tok); err != nil || tok.Token == "" {
		t.Fatalf("token new: %v %+v", err, tok)
	}
	var st struct{ Status erg.Status }
	json.Unmarshal([]byte(p.erg(false, "status", "--json")), &st)
	if st.Status.URL == "" {
		t.Fatal("status --json has no URL")
	}
	remote := p.overHTTP(st.Status.URL, tok.Token)
	if out := remote.erg(false, "grain", "ls"); !strings.Contains(out, "Plans") || !strings.Contains(out, restored.ID) {
		t.Errorf("grain ls over HTTP:\n%s", out)
	}
	remote.erg(false, "token", "rm", tok.ID)
	if out := remote.erg(true, "grain", "ls"); !strings.Contains(out, "unknown API token") {
		t.Errorf("a revoked token: %s", out)
	}
}

// TestRevokingAShareCutsItsOpenWebsockets checks at the protocol level what
// the browser test shows: revocation closes the share's live websockets at
// once and refuses its next request, and leaves other sessions alone.
func TestRevokingAShareCutsItsOpenWebsockets(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	ctx := context.Background()
	g, err := n.grains.NewGrain(ctx, alice.user(), "notes", "")
	if err != nil {
		t.Fatal(err)
	}
	sh, err := n.shares.New(ctx, alice.user(), g.ID, erg.ShareRequest{Role: "viewer", Anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	// The owner's session through the shell, and a visitor's through the link.
	dial := func(w *web, page string) *websocket.Conn {
		t.Helper()
		code, body := w.get(page)
		m := frameRe.FindStringSubmatch(body)
		if code != 200 || m == nil {
			t.Fatalf("%s: %d, no frame", page, code)
		}
		if code, _ := w.get(html.UnescapeString(m[1])); code != http.StatusSeeOther {
			t.Fatalf("frame login: %d", code)
		}
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.grainOrigin(g.ID), "http")+"/ws", &websocket.DialOptions{HTTPClient: w.c})
		if err != nil {
			t.Fatalf("websocket: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if _, _, err := c.Read(ctx); err != nil { // the note
			t.Fatal(err)
		}
		return c
	}
	owner := dial(alice, "/grains/"+g.ID)
	visitor := n.webClient(t)
	vs := dial(visitor, strings.TrimPrefix(sh.URL, n.URL()))
	// A link that expires in a second or two cuts its websocket when it does.
	brief, err := n.shares.New(ctx, alice.user(), g.ID, erg.ShareRequest{Role: "viewer", Anonymous: true, ExpiresIn: 2})
	if err != nil {
		t.Fatal(err)
	}
	bs := dial(n.webClient(t), strings.TrimPrefix(brief.URL, n.URL()))
	if code, _ := visitor.get(n.grainOrigin(g.ID) + "/api/note"); code != 200 {
		t.Fatalf("the visitor reads: %d", code)
	}

	if err := n.shares.Revoke(ctx, alice.user(), sh.ID); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, _, err := vs.Read(rctx); err == nil || rctx.Err() != nil {
		t.Errorf("the visitor's websocket after revocation: %v (deadline: %v)", err, rctx.Err())
	}
	if code, _ := visitor.get(n.grainOrigin(g.ID) + "/api/note"); code != http.StatusForbidden {
		t.Errorf("the visitor's next request: %d, want 403", code)
	}
	if _, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(n.grainOrigin(g.ID), "http")+"/ws", &websocket.DialOptions{HTTPClient: visitor.c}); err == nil {
		t.Error("the visitor opened a new websocket after revocation")
	}
	ectx, cancel3 := context.WithTimeout(ctx, 4*time.Second)
	defer cancel3()
	if _, _, err := bs.Read(ectx); err == nil || ectx.Err() != nil {
		t.Errorf("the websocket of an expired link: %v (deadline: %v)", err, ectx.Err())
	}
	pctx, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	go owner.Read(pctx) // Ping needs a reader
	if err := owner.Ping(pctx); err != nil {
		t.Errorf("the owner's websocket went down with the share: %v", err)
	}
}
