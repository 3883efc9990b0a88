package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"erg"
)

// putFile puts a file in a file drop grain's storage, as an upload would.
func putFile(t *testing.T, n *testNode, grain, name, data string) {
	t.Helper()
	dir := filepath.Join(n.grains.Dir(grain), "var", "files")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// linkDrop clicks "Link a file drop" in the to-do list open in u's tab,
// picks the drop titled title in the shell's powerbox dialog, and waits
// until the list shows the drop's file name.
func linkDrop(t *testing.T, u *user, todo, title, file string) {
	t.Helper()
	f := u.frame(todo)
	f.waitJS("the to-do page", `!!document.querySelector("[data-testid=link-drop]") && !document.querySelector("[data-testid=link-drop]").hidden`)
	eval[bool](f, `document.querySelector("[data-testid=link-drop]").click(), true`)
	u.waitJS("the powerbox dialog", `document.getElementById("powerbox").open && document.querySelectorAll("[data-testid=powerbox-option]").length > 0`)
	u.settle()
	u.screenshot("powerbox-picker")
	picked := eval[bool](u, `(() => {
		for (const o of document.querySelectorAll("[data-testid=powerbox-option]")) {
			if (o.closest("label").querySelector(".title").textContent === `+jsString(title)+`) { o.click(); return true }
		}
		return false
	})()`)
	if !picked {
		t.Fatalf("the picker does not offer %q", title)
	}
	u.do("connect", chromedp.Click(chromedp.CSS(`[data-testid=powerbox-connect]`)))
	f.waitJS("the linked drop's file in the to-do list", `document.querySelector("[data-testid=attachment-files]").textContent.includes(`+jsString(file)+`)`)
}

func jsString(s string) string {
	b := []byte{'"'}
	for _, r := range s {
		switch r {
		case '"', '\\':
			b = append(b, '\\', byte(r))
		default:
			b = append(b, string(r)...)
		}
	}
	return string(append(b, '"'))
}

// listAndDrop starts a node whose owner, signed in in Chromium, has a
// file drop "Photos" holding beach.jpg and a to-do list "Holiday", open in
// the tab.
func listAndDrop(t *testing.T) (n *testNode, u *user, drop, todo erg.Grain) {
	t.Helper()
	n = startNode(t, nil)
	n.setUp(t)
	u = newBrowser(t, n).newUser()
	u.signIn(n)
	ctx := context.Background()
	drop, err := n.grains.NewGrain(ctx, n.owner(), "filedrop", "Photos")
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, n, drop.ID, "beach.jpg", "not really a picture")
	todo, err = n.grains.NewGrain(ctx, n.owner(), "todo", "Holiday")
	if err != nil {
		t.Fatal(err)
	}
	u.do("open the list", chromedp.Navigate(n.URL()+"/grains/"+todo.ID), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	return n, u, drop, todo
}

// TestBrowserPowerboxLinksAFileDrop: in a to-do list the owner clicks
// "Link a file drop"; the shell's powerbox dialog offers their file drops
// (and not the list itself); they pick one; the list's server claims the
// grant through its bridge and lists the drop's files. The connection is
// listed on both grains and disconnecting it stops the list's access.
func TestBrowserPowerboxLinksAFileDrop(t *testing.T) {
	t.Parallel()
	n, u, drop, todo := listAndDrop(t)
	ctx := context.Background()
	linkDrop(t, u, todo.ID, "Photos", "beach.jpg")

	for _, id := range []string{todo.ID, drop.ID} {
		gs, err := n.pbox.List(ctx, n.owner(), id)
		if err != nil || len(gs) != 1 || gs[0].Role != "viewer" {
			t.Fatalf("connections of %s: %+v %v", id, gs, err)
		}
	}
	u.do("the drop's connections", chromedp.Navigate(n.URL()+"/grains/"+drop.ID+"?connections=1"),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=grants]`)))
	u.screenshot("powerbox-connections")
	u.settle()
	u.do("disconnect", chromedp.Click(chromedp.CSS(`[data-testid=grant-revoke]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=no-grants]`)))
	u.do("the list again", chromedp.Navigate(n.URL()+"/grains/"+todo.ID), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	f := u.frame(todo.ID)
	f.waitJS("the list's refusal", `document.querySelector("[data-testid=attachments-note]").textContent.includes("refused")`)
}

// TestBrowserPowerboxAcrossNodes: A's owner shares a file drop with B's
// node; on B, a to-do list links it through the powerbox, which offers the
// friend's grain among B's own, and lists its files over the federation
// link. When A revokes the share the grant stops.
func TestBrowserPowerboxAcrossNodes(t *testing.T) {
	t.Parallel()
	a, b, share := friendsFileDrop(t, "A's photos", "mountain.jpg", "not really a picture either")
	ctx := context.Background()
	sharedWith(t, b, b.owner(), "A's photos")
	todo, err := b.grains.NewGrain(ctx, b.owner(), "todo", "Trip")
	if err != nil {
		t.Fatal(err)
	}
	br := newBrowser(t, b)
	u := br.newUser()
	u.signIn(b)
	u.do("open the list on b", chromedp.Navigate(b.URL()+"/grains/"+todo.ID), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	linkDrop(t, u, todo.ID, "A's photos", "mountain.jpg")

	if err := a.shares.Revoke(ctx, a.owner(), share.ID); err != nil {
		t.Fatal(err)
	}
	u.do("the list again", chromedp.Navigate(b.URL()+"/grains/"+todo.ID), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	f := u.frame(todo.ID)
	f.waitJS("the list's refusal after the share ended", `document.querySelector("[data-testid=attachments-note]").textContent.includes("refused")`)
}

// TestBrowserPowerboxFloodIsRefused: a grain's frame sends two hundred
// powerbox requests at once. The shell opens one dialog and answers every
// other request with an error; after the user cancels, an ordinary
// request works, and only what the user picked reached the node.
func TestBrowserPowerboxFloodIsRefused(t *testing.T) {
	t.Parallel()
	n, u, _, todo := listAndDrop(t)
	ctx := context.Background()
	f := u.frame(todo.ID)
	f.waitJS("the to-do page", `!!document.querySelector("[data-testid=link-drop]")`)
	eval[bool](f, `(() => {
		window.flood = {errors: 0, canceled: 0, claims: 0};
		addEventListener("message", (e) => {
			const m = e.data && e.data.ergPowerbox;
			if (!m || !String(m.rpcId).startsWith("flood")) return;
			if (m.error) flood.errors++;
			else if (m.canceled) flood.canceled++;
			else if (m.claim) flood.claims++;
		});
		for (let i = 0; i < 200; i++) parent.postMessage({ergPowerbox: {rpcId: "flood" + i, query: {app: "filedrop"}, label: "flood"}}, "*");
		return true;
	})()`)
	u.waitJS("one powerbox dialog", `document.getElementById("powerbox").open && document.querySelectorAll("dialog[open]").length === 1`)
	f.waitJS("199 requests refused", `flood.errors === 199`)
	u.settle()
	u.do("cancel", chromedp.Click(chromedp.CSS(`[data-testid=powerbox-cancel]`)))
	f.waitJS("the open request canceled", `flood.canceled === 1 && flood.claims === 0`)

	// The shell is still the user's: the list's own request works.
	linkDrop(t, u, todo.ID, "Photos", "beach.jpg")
	var claims int
	n.db.QueryRow(`SELECT count(*) FROM powerbox_claims`).Scan(&claims)
	if gs, _ := n.pbox.List(ctx, n.owner(), todo.ID); len(gs) != 1 || claims > 1 {
		t.Fatalf("after the flood: %d grants, %d claims; want the one the user picked", len(gs), claims)
	}
}
