package node

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// signIn signs the owner in on a node's login page in u's tab.
func (u *user) signIn(n *testNode) {
	u.b.t.Helper()
	u.do("sign in on "+n.friends.Name(), chromedp.Navigate(n.URL()+"/login"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=login-username]`), "alice"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=login-password]`), ownerPassword),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)),
	)
}

// TestBrowserFriendsShareANote: the owners of two nodes become friends on
// their Friends pages; A's owner shares a note with B's node in the share
// dialog; in a browser on B the note opens from "Shared with me" on B's
// own grain origin, and what is typed there shows live in A's browser.
func TestBrowserFriendsShareANote(t *testing.T) {
	t.Parallel()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	bn := startNode(t, func(c *Config) { c.Name = "bnode" })
	a.setUp(t)
	bn.setUp(t)
	br := newBrowser(t, a)
	onA, onB := br.newUser(), br.newUser()
	onA.signIn(a)
	onB.signIn(bn)

	onA.do("invite a friend", chromedp.Navigate(a.URL()+"/friends"), chromedp.Click(chromedp.CSS(`[data-testid=friend-invite]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=friend-code]`)))
	code := onA.value(`[data-testid=friend-code]`)
	onA.screenshot("friends-invite")
	onB.do("paste the invite", chromedp.Navigate(bn.URL()+"/friends"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=friend-add-code]`), code),
		chromedp.Click(chromedp.CSS(`[data-testid=friend-add]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=notice]`)))
	if got := onB.text(`[data-friend=anode] [data-testid=friend-status]`); got[:6] != "online" {
		t.Errorf("anode on b's Friends page: %q", got)
	}
	onB.screenshot("friends")

	g, err := a.grains.NewGrain(t.Context(), a.owner(), "notes", "Plans")
	if err != nil {
		t.Fatal(err)
	}
	onA.do("open the share dialog", chromedp.Navigate(a.URL()+"/grains/"+g.ID+"?share=1"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-friend-create]`)))
	onA.settle()
	onA.do("share with bnode",
		chromedp.SetValue(chromedp.CSS(`[data-testid=share-friend]`), "bnode"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=share-friend-role]`), "editor"),
		chromedp.Click(chromedp.CSS(`[data-testid=share-friend-create]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-delivered]`)))
	onA.screenshot("share-friend")

	onB.do("b's grains", chromedp.Navigate(bn.URL()+"/grains"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=shared-grains]`)))
	onB.screenshot("shared-from-friend")
	onB.do("open the friend's note", chromedp.Click(chromedp.CSS(`[data-testid=shared-grains] a`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	remoteID := grainIDFromURL(t, onB.location())

	onA.do("a opens the note", chromedp.Navigate(a.URL()+"/grains/"+g.ID), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	noteA := onA.frame(g.ID)
	noteA.waitJS("a's note to connect", `document.querySelector("#status").dataset.state === "connected"`)
	noteB := onB.frame(remoteID)
	noteB.waitJS("b can edit through b", `document.querySelector("#status").dataset.state === "connected" && !document.querySelector("#text").readOnly`)
	noteB.do("b types", chromedp.SendKeys(chromedp.CSS(`#text`), "Hello from bnode"))
	noteB.waitJS("b's edit to save", `document.querySelector("#updated-by").textContent.includes("alice@bnode")`)
	noteA.waitJS("a to see b's edit live", `document.querySelector("#text").value === "Hello from bnode"`)
	onB.screenshot("friend-note")
}
