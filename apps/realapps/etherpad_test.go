package realapps

import (
	"net/http"
	"strings"
	"testing"

	"erg/nodetest"
)

// padJS reaches into Etherpad's editor: its two nested frames (same
// origin as the page) around the contenteditable body ace edits.
const padJS = `(() => { const o = document.querySelector("iframe[name=ace_outer]"); const i = o && o.contentDocument && o.contentDocument.querySelector("iframe[name=ace_inner]"); const d = i && i.contentDocument; return d && d.getElementById("innerdocbody") ? d : null; })()`

// padEditor is Etherpad's editor object, which 1.8.14's page keeps in its
// module (only pad, chat, padeditbar and padimpexp are globals).
const padEditor = `require("ep_etherpad-lite/static/js/pad_editor").padeditor`

// typeInPad types text at the end of the pad through Etherpad's editor
// (ace's replaceRange, as Etherpad's own frontend tests edit), which sends
// the edit to the server as a changeset.
func typeInPad(u *tab, text string) {
	u.t.Helper()
	u.waitJS("the pad's editor", padReady)
	u.do("type in the pad", evalDo(`(`+padEditor+`.ace.callWithAce((ace) => {
		const rep = ace.ace_getRep(), last = rep.lines.length() - 1, end = [last, rep.lines.atIndex(last).text.length];
		ace.ace_replaceRange(end, end, `+jsString(text)+`);
	}, "erg-test", true), true)`))
}

const padReady = `typeof clientVars !== "undefined" && typeof pad !== "undefined" && pad.collabClient && !!` + padEditor + `.ace && !!(` + padJS + `)`

// TestEtherpad runs Etherpad in a grain: alice and bob (a user of a
// friend's node, with an editor share) type in the one pad at once and
// each sees the other's words live, under the names erg gives them;
// carol, on a third node with a viewer share, sees the pad read-only and
// her edits and imports change nothing; the pad is there after the
// grain was stopped.
func TestEtherpad(t *testing.T) {
	env, a, b, g := onTwoFriends(t, "etherpad", "pad", "Pad")
	c := env.Node("cnode", nodetest.Owner("carol"))
	env.Befriend(a, c)
	a.ShareWith(g, b, "editor")
	a.ShareWith(g, c, "viewer")

	br := newBrowser(t)
	alice := br.newTab()
	alice.open(a, g.ID)
	alice.waitJS("alice's pad", padReady+` && clientVars.userName === "alice" && !clientVars.readonly`)
	bob := br.newTab()
	bob.open(b, b.Shared("Pad").ID)
	bob.waitJS("bob's pad, through his node", padReady+` && clientVars.userName === "bob@bnode" && !clientVars.readonly`)

	typeInPad(alice, " Alice was here.")
	typeInPad(bob, " Bob too.")
	for _, u := range []*tab{alice, bob} {
		u.waitJS("both edits in the pad", `(`+padJS+`).body.innerText.includes("Alice was here.") && (`+padJS+`).body.innerText.includes("Bob too.")`)
	}
	alice.waitJS("bob in alice's user list", `pad.collabClient.getConnectedUsers().some(u => u.name === "bob@bnode")`)
	w := a.Open(g)
	nodetest.Await(t, "both edits saved", func() bool {
		code, body := w.Get("/p/pad/export/txt")
		return code == 200 && strings.Contains(body, "Alice was here.") && strings.Contains(body, "Bob too.")
	})

	// Carol may only read.
	carol := br.newTab()
	carol.open(c, c.Shared("Pad").ID)
	carol.waitJS("carol's read-only pad", padReady+` && clientVars.readonly === true && (`+padJS+`).body.innerText.includes("Bob too.")`)
	if evalJS[bool](carol, `(`+padJS+`).body.isContentEditable`) {
		t.Error("carol's pad is editable")
	}
	typeInPad(carol, " Carol forged this.") // her own editor takes it and sends it; the server must drop it
	carol.waitJS("carol's edit in her own editor", `(`+padJS+`).body.innerText.includes("Carol forged this.")`)
	code := evalJS[int](carol, `(() => { const f = new FormData(); f.append("file", new Blob(["Carol imported this."], {type: "text/plain"}), "x.txt"); return fetch("/p/pad/import", {method: "POST", body: f}).then(r => r.status); })()`)
	if code < 400 {
		t.Errorf("carol's import = %d", code)
	}
	typeInPad(alice, " Alice again.")
	alice.waitJS("alice's last edit in her pad", `(`+padJS+`).body.innerText.includes("Alice again.")`)
	bob.waitJS("alice's last edit in bob's pad", `(`+padJS+`).body.innerText.includes("Alice again.")`)
	if _, body := w.Get("/p/pad/export/txt"); strings.Contains(body, "Carol") {
		t.Errorf("carol changed the pad: %q", body)
	}

	// Only the grain's one pad: other pads' pages lead back to it.
	noFollow := *w.HTTP
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, p := range []string{"/", "/p/another", "/p/another/export/txt"} {
		resp, err := noFollow.Get(w.Origin + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/p/pad" {
			t.Errorf("GET %s = %d to %q, want a redirect to the grain's pad", p, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	// Stopped and started again, the pad is as it was.
	a.Restart()
	again := br.newTab()
	again.open(a, g.ID)
	again.waitJS("the pad after a restart", padReady+` && (`+padJS+`).body.innerText.includes("Alice again.")`)
	if _, body := a.Open(g).Get("/p/pad/export/txt"); !strings.Contains(body, "Bob too.") || strings.Contains(body, "Carol") {
		t.Errorf("the pad after a restart: %q", body)
	}
}
