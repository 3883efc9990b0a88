package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"erg/apppkg"
	"erg/appstore"
)

// publishApp publishes a package from n with a summary and tags.
func publishApp(t *testing.T, n *testNode, key ed25519.PrivateKey, pkgFile []byte, summary string, tags ...string) {
	t.Helper()
	ctx := context.Background()
	pkg, err := apppkg.Open(ctx, bytes.NewReader(pkgFile), int64(len(pkgFile)), apppkg.SizeLimits{})
	if err != nil {
		t.Fatal(err)
	}
	desc, err := apppkg.DescriptorCID(pkg)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := appstore.SignListing(appstore.ListingFor(pkg, desc, n.p2p.host.ID().String(), tags, summary), key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.store.Publish(ctx, rec, bytes.NewReader(pkgFile)); err != nil {
		t.Fatal(err)
	}
}

// TestBrowserStore installs from the Store page in a real browser: the
// owner searches, clicks Install and watches the download stream in,
// lands on the Apps page with the app there; when a newer version is
// published the Apps page offers it, and Update installs it.
func TestBrowserStore(t *testing.T) {
	t.Parallel()
	pub := startNode(t, func(c *Config) { c.P2PListen = []string{"/ip4/127.0.0.1/tcp/0"} })
	// The browsing node starts without the test apps, so its Apps page
	// shows what came from the store.
	n := startNode(t, func(c *Config) {
		c.AppsDir = ""
		c.Bootstrap = pub.P2PAddrs()
		c.P2PListen = []string{"/ip4/127.0.0.1/tcp/0"}
	})
	waitFor(t, 20*time.Second, "a peer in the routing table", func() bool { return n.p2p.host.RoutingTableSize() > 0 })
	notesKey, _ := apppkg.GenerateKey()
	todoKey, _ := apppkg.GenerateKey()
	notesID := apppkg.AppID(notesKey.Public().(ed25519.PublicKey))
	publishApp(t, pub, notesKey, packTestApp(t, "notes", notesKey, 1, "0.1.0", noteIcon), "A note you can edit with others, live.", "notes", "productivity")
	publishApp(t, pub, todoKey, packTestApp(t, "todo", todoKey, 1, "0.1.0", ""), "A shared to-do list: add items, tick them off.", "todo", "productivity")

	b := newBrowser(t, n)
	base := n.URL()
	alice := b.newUser()
	alice.do("set up the owner",
		chromedp.Navigate(n.SetupURL()),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password]`), "correct horse battery"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password2]`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid=setup-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)),
	)

	alice.do("search the store",
		chromedp.Navigate(base+"/store"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=store-query]`), "productivity"),
		chromedp.Click(chromedp.CSS(`[data-testid=store-search]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=store-results]`)),
	)
	if got := alice.text(`[data-testid=store-summary]`); !strings.HasPrefix(got, "2 apps found") {
		t.Fatalf("search summary %q", got)
	}
	alice.screenshot("store")
	alice.do("open the listing", chromedp.Click(chromedp.CSS(`[data-testid=listing-`+notesID+`]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=install-`+notesID+`]`)))
	alice.screenshot("store-app")

	// The progress lines outlive the page in sessionStorage, which the
	// Apps page the install lands on can read back.
	alice.waitJS("the store script", `document.readyState === "complete"`)
	eval[bool](alice, `(() => {
		const seen = [];
		new MutationObserver(() => {
			const p = document.querySelector("[data-testid=install-progress]");
			if (p && !p.hidden) { seen.push(p.textContent); sessionStorage.setItem("progress", JSON.stringify(seen)); }
		}).observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true});
		return true;
	})()`)
	alice.do("install", chromedp.Click(chromedp.CSS(`[data-testid=install-`+notesID+`]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=notice]`)))
	if got := alice.text(`[data-testid=notice]`); got != "Installed Notes 0.1.0 from the store." {
		t.Fatalf("after the install: %q", got)
	}
	if loc := alice.location(); !strings.HasSuffix(loc, "/apps?installed="+notesID) {
		t.Errorf("the install landed on %s", loc)
	}
	progress := eval[string](alice, `sessionStorage.getItem("progress") || ""`)
	if !strings.Contains(progress, "Fetched ") || !strings.Contains(progress, "from 1 peer") {
		t.Errorf("the page showed no download progress: %s", progress)
	}
	if v := n.appVersion(notesID); v != 1 {
		t.Fatalf("installed version %d", v)
	}

	// A newer version: the Apps page marks it and Update installs it.
	publishApp(t, pub, notesKey, packTestApp(t, "notes", notesKey, 2, "0.2.0", noteIcon), "A note you can edit with others, live.", "notes", "productivity")
	alice.do("check for updates", chromedp.Navigate(base+"/apps"), chromedp.Click(chromedp.CSS(`[data-testid=check-updates]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=update-`+notesID+`]`)))
	if got := alice.text(`[data-testid=update-` + notesID + `]`); got != "Update available: 0.2.0" {
		t.Errorf("update mark %q", got)
	}
	alice.screenshot("store-update")
	alice.waitJS("the store script", `document.readyState === "complete"`)
	alice.do("update", chromedp.Click(chromedp.CSS(`[data-testid=update-button-`+notesID+`]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=notice]`)))
	if got := alice.text(`[data-testid=notice]`); got != "Installed Notes 0.2.0 from the store." {
		t.Fatalf("after the update: %q", got)
	}
	if v := n.appVersion(notesID); v != 2 {
		t.Fatalf("version after the update: %d", v)
	}
}
