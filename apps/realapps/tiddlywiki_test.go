package realapps

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"erg/nodetest"
)

// visibleEditButton says whether the page shows a button that edits or
// makes a tiddler.
const visibleEditButton = `[...document.querySelectorAll('button[title="Edit this tiddler"], button[title="Create a new tiddler"]')].some(e => e.offsetParent !== null)`

// TestTiddlyWiki runs TiddlyWiki's Node.js server in a grain (the
// package published in the store from alice's node installs on bob's): alice
// writes a tiddler with TiddlyWiki's own editor in Chromium, and
// TiddlyWiki saves it as alice (from X-Erg-Username) to /var/wiki; bob,
// on a friend's node with a viewer share, reads it at the same time in a
// read-only wiki and cannot write, neither through the page nor by
// forging the header TiddlyWiki trusts; the wiki survives the grain's
// stop and a backup restored as a new grain.
func TestTiddlyWiki(t *testing.T) {
	_, a, b, g := onTwoFriends(t, "tiddlywiki", "wiki", "Wiki")

	br := newBrowser(t)
	alice := br.newTab()
	alice.open(a, g.ID)
	alice.waitJS("TiddlyWiki to load, signed in as alice",
		`typeof $tw !== "undefined" && $tw.syncer && $tw.wiki.getTiddlerText("$:/status/UserName") === "alice" && $tw.wiki.getTiddlerText("$:/status/IsReadOnly") === "no"`)

	// TiddlyWiki's editor: "new tiddler", a title, a text, "ok".
	alice.do("click new tiddler", clickJS(`button[title="Create a new tiddler"]`))
	alice.waitJS("the editor", `!!document.querySelector("input.tc-titlebar")`)
	alice.do("type the title and text", evalDo(`(() => {
		const title = document.querySelector("input.tc-titlebar");
		title.value = "Shopping"; title.dispatchEvent(new Event("input", {bubbles: true}));
		const frame = document.querySelector("iframe.tc-edit-texteditor-body");
		const area = frame ? frame.contentDocument.querySelector("textarea") : document.querySelector("textarea.tc-edit-texteditor");
		area.value = "Milk and bread"; area.dispatchEvent(new Event("input", {bubbles: true}));
		return true;
	})()`))
	alice.do("click ok", clickJS(`button[title="Confirm changes to this tiddler"]`))
	w := a.Open(g)
	nodetest.Await(t, "the tiddler saved on the server as alice", func() bool {
		code, body := w.Get("/recipes/default/tiddlers/Shopping")
		return code == 200 && strings.Contains(body, `"text":"Milk and bread"`) && strings.Contains(body, `"modifier":"alice"`)
	})
	if _, err := os.Stat(filepath.Join(a.DataDir, "grains", g.ID, "var", "wiki", "tiddlers", "Shopping.tid")); err != nil {
		t.Errorf("the tiddler is not a file in the grain's /var/wiki: %v", err)
	}

	// Bob, on his own node, with a viewer share, at the same time.
	a.ShareWith(g, b, "viewer")
	bobGrain := b.Shared("Wiki")
	bob := br.newTab()
	bob.open(b, bobGrain.ID)
	bob.waitJS("bob's read-only wiki with alice's tiddler",
		`typeof $tw !== "undefined" && $tw.syncer && $tw.wiki.getTiddlerText("$:/status/IsReadOnly") === "yes" && $tw.wiki.getTiddlerText("Shopping") === "Milk and bread"`)
	bob.do("open the tiddler", evalDo(`(new $tw.Story()).navigateTiddler("Shopping"), true`))
	bob.waitJS("the tiddler shown", `[...document.querySelectorAll(".tc-tiddler-frame")].some(f => f.innerText.includes("Milk and bread"))`)
	// TiddlyWiki hides its edit controls in a read-only wiki (its
	// tiddlyweb plugin's stylesheet); alice sees them.
	if evalJS[bool](bob, visibleEditButton) {
		t.Error("bob's read-only wiki shows an edit button")
	}
	alice.do("open the tiddler", evalDo(`(new $tw.Story()).navigateTiddler("Shopping"), true`))
	alice.waitJS("alice's edit button", visibleEditButton)
	for _, hdr := range []string{"", "alice"} {
		js := `fetch("/recipes/default/tiddlers/Shopping", {method: "PUT", headers: {"X-Requested-With": "TiddlyWiki", "Content-Type": "application/json"` +
			map[bool]string{true: `, "X-Erg-Tiddlywiki-Writer": "` + hdr + `"`, false: ""}[hdr != ""] +
			`}, body: JSON.stringify({title: "Shopping", text: "bob was here"})}).then(r => r.status)`
		if code := evalJS[int](bob, js); code < 400 {
			t.Errorf("bob's PUT (writer header %q) = %d", hdr, code)
		}
	}
	evalJS[bool](bob, `$tw.wiki.addTiddler(new $tw.Tiddler({title: "BobsNote", text: "x"})), true`)
	if code, body := w.Get("/recipes/default/tiddlers/Shopping"); code != 200 || !strings.Contains(body, "Milk and bread") {
		t.Errorf("after bob's writes, the tiddler is %d %s", code, body)
	}
	if code, _ := w.Get("/recipes/default/tiddlers/BobsNote"); code != 404 {
		t.Errorf("bob's page saved a tiddler: %d", code)
	}

	// The grain stops with its node; the wiki is there when it starts again.
	a.Restart()
	again := br.newTab()
	again.open(a, g.ID)
	again.waitJS("the tiddler after a restart", `typeof $tw !== "undefined" && $tw.wiki.getTiddlerText("Shopping") === "Milk and bread"`)

	// A backup restores as a new grain with the wiki.
	var zip bytes.Buffer
	if err := a.Client().BackupGrain(context.Background(), g.ID, &zip); err != nil {
		t.Fatal(err)
	}
	restored, err := a.Client().RestoreGrain(context.Background(), &zip)
	if err != nil {
		t.Fatal(err)
	}
	code, body := a.Open(restored).Get("/recipes/default/tiddlers/Shopping")
	var tid map[string]any
	json.Unmarshal([]byte(body), &tid)
	if code != 200 || tid["text"] != "Milk and bread" {
		t.Errorf("the restored grain's tiddler: %d %s", code, body)
	}
}
