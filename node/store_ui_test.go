package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"erg/apppkg"
)

// publishEcho publishes version v of the echo app, signed by key, from n.
func publishEcho(t *testing.T, n *testNode, key ed25519.PrivateKey, v int64, tags ...string) {
	t.Helper()
	pkg := packEcho(t, key, v)
	if _, err := n.store.Publish(context.Background(), signedListing(t, n, key, pkg, tags...), bytes.NewReader(pkg)); err != nil {
		t.Fatalf("publish echo version %d: %v", v, err)
	}
}

// installedVersion is the version of app installed on n, 0 if none.
func (n *testNode) appVersion(id string) int64 {
	n.t.Helper()
	apps, err := n.installer.Apps(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	for _, a := range apps {
		if a.ID == id {
			return a.Version
		}
	}
	return 0
}

// storeReq sends a request of the Store pages and returns the status, the
// unescaped page and its Location.
func (w *web) storeReq(method, path string, form url.Values, hdr ...string) (int, string, string) {
	w.t.Helper()
	var req *http.Request
	if method == "GET" {
		req, _ = http.NewRequest("GET", w.n.URL()+path, nil)
	} else {
		if form == nil {
			form = url.Values{}
		}
		if _, ok := form["csrf"]; !ok {
			form.Set("csrf", w.csrf)
		}
		req, _ = http.NewRequest(method, w.n.URL()+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	code, body, h := w.do(req)
	return code, html.UnescapeString(body), h.Get("Location")
}

func TestStorePagesNeedASessionTheOwnerAndCSRF(t *testing.T) {
	t.Parallel()
	nodes := startStoreNodes(t, 2)
	pub, n := nodes[0], nodes[1]
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	publishEcho(t, pub, key, 1, "guarded")
	alice := n.setUp(t)
	bob := n.join(t, "bob")

	stranger := n.webClient(t)
	stranger.csrf = alice.csrf // knowing a token is not enough without the session
	for _, p := range []string{"/store", "/store?q=guarded", "/store/apps/" + appID} {
		if code, _, loc := stranger.storeReq("GET", p, nil); code != http.StatusSeeOther || !strings.HasPrefix(loc, "/login?next=") {
			t.Errorf("GET %s without a session: %d to %q, want a redirect to sign in", p, code, loc)
		}
	}
	if code, _, _ := stranger.storeReq("POST", "/store/apps/"+appID+"/install", nil); code != http.StatusUnauthorized {
		t.Errorf("install without a session: %d, want 401", code)
	}

	// Bob may browse, but not install.
	code, body, _ := bob.storeReq("GET", "/store?q=guarded", nil)
	if code != 200 || !strings.Contains(body, `data-testid="listing-`+appID+`"`) {
		t.Fatalf("bob's search: %d\n%s", code, body)
	}
	if strings.Contains(body, `action="/store/apps/`+appID+`/install"`) {
		t.Error("bob is offered an install button")
	}
	if code, body, _ := bob.storeReq("GET", "/store/apps/"+appID, nil); code != 200 || !strings.Contains(body, "not installed") {
		t.Errorf("bob's view of the app: %d\n%s", code, body)
	}
	if code, body, _ := bob.storeReq("POST", "/store/apps/"+appID+"/install", nil); code != http.StatusForbidden || !strings.Contains(body, "only the node's owner") {
		t.Errorf("bob's install: %d\n%s", code, body)
	}

	// The owner's install needs her CSRF token and the shell's origin.
	for _, c := range []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"no token", url.Values{"csrf": {""}}, nil},
		{"a forged token", url.Values{"csrf": {"forged"}}, nil},
		{"bob's token", url.Values{"csrf": {bob.csrf}}, nil},
		{"another origin", nil, []string{"Origin", "http://evil.example", "Sec-Fetch-Site", "cross-site"}},
	} {
		if code, _, _ := alice.storeReq("POST", "/store/apps/"+appID+"/install", c.form, c.hdr...); code != http.StatusForbidden {
			t.Errorf("alice's install with %s: %d, want 403", c.name, code)
		}
	}
	if v := n.appVersion(appID); v != 0 {
		t.Fatalf("a refused install installed version %d", v)
	}
}

func TestStorePageSearchesInstallsAndUpdates(t *testing.T) {
	t.Parallel()
	nodes := startStoreNodes(t, 2)
	pub, n := nodes[0], nodes[1]
	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	publishEcho(t, pub, key, 1, "echo", "pagetest")
	alice := n.setUp(t)
	bob := n.join(t, "bob")
	pubID := pub.p2p.host.ID().String()

	// A search shows the other node's listing with an Install button.
	code, body, _ := alice.storeReq("GET", "/store?q=pagetest", nil)
	if code != 200 {
		t.Fatalf("search: %d\n%s", code, body)
	}
	for _, want := range []string{`data-testid="listing-` + appID + `"`, "Echo", "echoes requests back", `<span class="tag">pagetest</span>`,
		pubID[:8] + "…" + pubID[len(pubID)-6:], `data-testid="install-` + appID + `"`, "1 app found"} {
		if !strings.Contains(body, want) {
			t.Errorf("the search page lacks %q", want)
		}
	}
	if !strings.Contains(body, `href="/store" aria-current="page"`) {
		t.Error("the nav does not mark the Store page")
	}
	if _, body, _ := alice.storeReq("GET", "/store?q=nosuchwordanywhere", nil); !strings.Contains(body, "No app in the store matches") {
		t.Errorf("a search that finds nothing:\n%s", body)
	}
	if code, body, _ := alice.storeReq("GET", "/store?q=%21%21%21", nil); code != http.StatusBadRequest || !strings.Contains(body, "no words to search for") {
		t.Errorf("a search without words: %d\n%s", code, body)
	}

	// The app's page shows the listing from the DHT.
	code, body, _ = alice.storeReq("GET", "/store/apps/"+appID, nil)
	l, _ := n.store.Listing(context.Background(), appID)
	for _, want := range []string{"<h1>Echo</h1>", appID, pubID, l.Package, `href="/store?q=pagetest"`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("the app's page (%d) lacks %q", code, want)
		}
	}
	if code, body, _ := alice.storeReq("GET", "/store/apps/not-an-app", nil); code != http.StatusBadRequest || !strings.Contains(body, "is not an app id") {
		t.Errorf("a malformed app id: %d\n%s", code, body)
	}

	// Install from the page: it waits, then the Apps page says so.
	code, _, loc := alice.storeReq("POST", "/store/apps/"+appID+"/install", nil)
	if code != http.StatusSeeOther || loc != "/apps?installed="+appID {
		t.Fatalf("install: %d to %q", code, loc)
	}
	if v := n.appVersion(appID); v != 1 {
		t.Fatalf("installed version %d, want 1", v)
	}
	code, body, _ = alice.storeReq("GET", loc, nil)
	if code != 200 || !strings.Contains(body, "Installed Echo test from the store.") || !strings.Contains(body, "/apps/"+appID+"/remove") {
		t.Errorf("the Apps page after the install: %d\n%s", code, body)
	}
	if _, body, _ := alice.storeReq("GET", "/apps?installed=../../evil", nil); strings.Contains(body, `data-testid="notice"`) {
		t.Error("a crafted link puts a notice on the Apps page")
	}
	if _, body, _ := alice.storeReq("GET", "/store?q=pagetest", nil); !strings.Contains(body, `data-testid="state-`+appID+`">installed<`) {
		t.Errorf("the search does not say the app is installed:\n%s", body)
	}
	// Installing the same version again is refused, and says why.
	code, body, _ = alice.storeReq("POST", "/store/apps/"+appID+"/install", nil)
	if code != http.StatusBadRequest || !strings.Contains(body, "Not installed: Echo version 1 is installed") || !strings.Contains(body, "<h1>Echo</h1>") {
		t.Errorf("installing again: %d\n%s", code, body)
	}

	// A newer version in the store: the Apps page marks it, with an
	// Update button for the owner only.
	publishEcho(t, pub, key, 2, "echo", "pagetest")
	code, body, _ = alice.storeReq("GET", "/apps?check=1", nil)
	if code != 200 || !strings.Contains(body, `data-testid="update-`+appID+`"`) || !strings.Contains(body, "Update available") ||
		!strings.Contains(body, `data-testid="update-button-`+appID+`"`) {
		t.Fatalf("the Apps page does not offer the update: %d\n%s", code, body)
	}
	// The answer is kept: the next load shows it without asking again.
	if _, body, _ := bob.storeReq("GET", "/apps", nil); !strings.Contains(body, `data-testid="update-`+appID+`"`) ||
		strings.Contains(body, "update-button-") || strings.Contains(body, "check-updates") {
		t.Errorf("bob's Apps page should mark the update without an update or check button:\n%s", body)
	}
	if _, body, _ := alice.storeReq("GET", "/store?q=pagetest", nil); !strings.Contains(body, `data-testid="state-`+appID+`">update available<`) {
		t.Errorf("the search does not say an update is available:\n%s", body)
	}
	code, _, loc = alice.storeReq("POST", "/store/apps/"+appID+"/install", nil)
	if code != http.StatusSeeOther || n.appVersion(appID) != 2 {
		t.Fatalf("update: %d to %q, version %d", code, loc, n.appVersion(appID))
	}
	if _, body, _ := alice.storeReq("GET", "/apps", nil); strings.Contains(body, `data-testid="update-`+appID+`"`) {
		t.Errorf("the Apps page still offers the update after it:\n%s", body)
	}
}
