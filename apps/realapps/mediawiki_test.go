package realapps

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"erg/nodetest"
)

// mwReady says whether MediaWiki's page and its scripts have loaded, as
// the page's user (wgUserName: null for an anonymous reader).
const mwReady = `typeof mw !== "undefined" && !!mw.config && mw.config.get("wgAction") !== null && document.readyState === "complete"`

// goTo sends the tab to path on the grain's origin and waits for the page.
func (u *tab) goTo(path string) {
	u.t.Helper()
	u.do("go to "+path, evalDo(`(location.assign(`+jsString(path)+`), true)`))
}

// TestMediaWiki runs MediaWiki on SQLite in a grain (installed on bob's
// node from the store): the grain's first start installs the wiki; alice
// makes a page with MediaWiki's own editor in Chromium, saved as her
// (from X-Erg-Username, her account made on her first visit) in the
// SQLite database under /var; bob, on a friend's node with a viewer share,
// reads it anonymously, is shown the source read-only, and neither the
// edit form nor the API saves his edits; the page is there after the
// grain was stopped.
func TestMediaWiki(t *testing.T) {
	_, a, b, g := onTwoFriends(t, "mediawiki", "wiki", "Wiki")

	br := newBrowser(t)
	alice := br.newTab()
	alice.open(a, g.ID)
	alice.waitJS("MediaWiki's main page, signed in as Alice", mwReady+` && mw.config.get("wgUserName") === "Alice" && mw.config.get("wgIsProbablyEditable")`)

	// MediaWiki's editor: a new page, its text, a summary, "Save page".
	alice.goTo("/index.php?title=Shopping&action=edit")
	alice.waitJS("the editor", mwReady+` && mw.config.get("wgAction") === "edit" && !!document.getElementById("wpSave")`)
	alice.do("write the page and save it", evalDo(`(() => {
		document.getElementById("wpTextbox1").value = "Milk and '''bread'''.";
		document.getElementById("wpSummary").value = "the list";
		document.getElementById("wpSave").click();
		return true;
	})()`))
	alice.waitJS("the saved page", mwReady+` && mw.config.get("wgAction") === "view" && mw.config.get("wgPageName") === "Shopping" && !!document.querySelector("#mw-content-text b") && document.querySelector("#mw-content-text b").textContent === "bread"`)

	w := a.Open(g)
	if code, body := w.Get("/index.php?title=Shopping&action=raw"); code != 200 || body != "Milk and '''bread'''." {
		t.Errorf("the page's wikitext: %d %q", code, body)
	}
	if u := lastEditor(t, w); u != "Alice" {
		t.Errorf("the page's last revision is by %q, want Alice", u)
	}
	if _, err := os.Stat(filepath.Join(a.DataDir, "grains", g.ID, "var", "mediawiki", "data", "wiki.sqlite")); err != nil {
		t.Errorf("the wiki's SQLite database is not in the grain's /var: %v", err)
	}

	// Bob, on his own node, with a viewer share.
	a.ShareWith(g, b, "viewer")
	bob := br.newTab()
	bob.open(b, b.Shared("Wiki").ID)
	bob.waitJS("bob's wiki, anonymous", mwReady+` && mw.config.get("wgUserName") === null`)
	bob.goTo("/index.php/Shopping")
	bob.waitJS("alice's page for bob", mwReady+` && mw.config.get("wgPageName") === "Shopping" && document.getElementById("mw-content-text").innerText.includes("Milk and bread")`)
	if evalJS[bool](bob, `mw.config.get("wgIsProbablyEditable")`) {
		t.Error("MediaWiki tells bob's page it is editable")
	}
	bob.goTo("/index.php?title=Shopping&action=edit")
	bob.waitJS("the source, read-only", mwReady+` && !!document.getElementById("wpTextbox1") && document.getElementById("wpTextbox1").readOnly && !document.getElementById("wpSave")`)
	for _, js := range []string{
		// The edit form, posted as alice's browser posts it.
		`(() => { const f = new FormData(); f.append("wpTextbox1", "bob was here"); f.append("wpSummary", "x"); f.append("wpSave", "Save"); f.append("wpUnicodeCheck", "ℳ𝒲♥𝓊𝓃𝒾𝒸ℴ𝒹ℯ"); f.append("wpEditToken", mw.user.tokens.get("csrfToken")); f.append("wpUltimateParam", "1"); return fetch("/index.php?title=Shopping&action=submit", {method: "POST", body: f}).then(r => r.text()); })()`,
		// The API, with the token MediaWiki gave his page.
		`(() => { const f = new FormData(); f.append("action", "edit"); f.append("title", "Shopping"); f.append("text", "bob was here"); f.append("format", "json"); f.append("token", mw.user.tokens.get("csrfToken")); return fetch("/api.php", {method: "POST", body: f}).then(r => r.text()); })()`,
		`(() => { const f = new FormData(); f.append("action", "edit"); f.append("title", "BobsPage"); f.append("text", "bob was here"); f.append("format", "json"); f.append("token", mw.user.tokens.get("csrfToken")); return fetch("/api.php", {method: "POST", body: f, headers: {"X-Erg-Permissions": "read,write", "X-Erg-Username": "alice"}}).then(r => r.text()); })()`,
	} {
		evalJS[string](bob, js)
	}
	if code, body := w.Get("/index.php?title=Shopping&action=raw"); code != 200 || strings.Contains(body, "bob") {
		t.Errorf("after bob's edits the page is %d %q", code, body)
	}
	if code, _ := w.Get("/index.php?title=BobsPage&action=raw"); code != 404 {
		t.Errorf("bob made a page: %d", code)
	}

	// The grain stops with its node; the page is there when it starts
	// again, and alice is still herself.
	a.Restart()
	again := br.newTab()
	again.open(a, g.ID)
	again.waitJS("the wiki after a restart", mwReady+` && mw.config.get("wgUserName") === "Alice"`)
	again.goTo("/index.php/Shopping")
	again.waitJS("the page after a restart", mwReady+` && mw.config.get("wgPageName") === "Shopping" && document.getElementById("mw-content-text").innerText.includes("Milk and bread")`)
}

// lastEditor is the user name of the Shopping page's last revision, by
// MediaWiki's API.
func lastEditor(t *testing.T, w *nodetest.Window) string {
	t.Helper()
	code, body := w.Get("/api.php?action=query&prop=revisions&rvprop=user&format=json&formatversion=2&titles=" + url.QueryEscape("Shopping"))
	var r struct {
		Query struct {
			Pages []struct {
				Revisions []struct{ User string } `json:"revisions"`
			} `json:"pages"`
		} `json:"query"`
	}
	if err := json.Unmarshal([]byte(body), &r); err != nil || code != 200 || len(r.Query.Pages) != 1 || len(r.Query.Pages[0].Revisions) == 0 {
		t.Fatalf("the page's revisions: %d %s (%v)", code, body, err)
	}
	return r.Query.Pages[0].Revisions[0].User
}
