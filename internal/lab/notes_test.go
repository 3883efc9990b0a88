package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"erg"
	"erg/nodetest"
)

// tab is a grain open in a person's Chromium, in their home.
type tab struct {
	t    *testing.T
	who  string
	ctx  context.Context
	node *nodetest.Node
}

// openIn opens grain id of node n in a Chromium running in home's
// namespace: the sign-in link the node makes, followed as a click would.
// The link's host is g-<id>.localhost, which Chromium resolves to its own
// loopback, so the tab reaches the node of its own home and no other.
func openIn(t *testing.T, home *NS, n *nodetest.Node, id string) *tab {
	t.Helper()
	og, err := n.Client().OpenGrain(context.Background(), id)
	if err != nil {
		t.Fatalf("open %s on %s: %v", id, n.Name, err)
	}
	tb := &tab{t: t, who: n.Name, ctx: home.Chromium(t), node: n}
	tb.do("open the note", chromedp.Navigate(og.URL))
	return tb
}

func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(tb.ctx, chromedp.Location())
		body, _ := chromedp.Run(tb.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 500) : ""`))
		tb.t.Fatalf("%s: %s: %v (at %s: %q)", tb.who, what, err, loc, body)
	}
}

// wait polls a JavaScript condition in the tab until it holds.
func (tb *tab) wait(what, cond string, d time.Duration) {
	tb.t.Helper()
	deadline := time.Now().Add(d)
	// Each look has a deadline of its own: a tab that stopped answering
	// fails the test at d rather than holding it to go test's timeout,
	// which would skip the lab's teardown.
	look := func(a chromedp.Action[string]) (string, error) {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		defer cancel()
		return chromedp.Run(ctx, a)
	}
	for {
		ctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](cond))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := look(chromedp.Location())
			body, _ := look(chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 500) : ""`))
			tb.t.Fatalf("%s: waiting for %s (%s): %v (at %s: %q)", tb.who, what, cond, err, loc, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// typeAtEnd types text at the end of the note, as a person who clicked
// after the last word would.
func (tb *tab) typeAtEnd(text string) {
	tb.t.Helper()
	tb.do("type "+text,
		chromedp.Evaluate[chromedp.Void](`(() => { const t = document.querySelector("#text"); t.focus(); t.setSelectionRange(t.value.length, t.value.length); })()`),
		chromedp.KeyEvent(text))
}

const (
	noteConnected = `document.querySelector("#status").dataset.state === "connected"`
	noteWritable  = noteConnected + ` && !document.querySelector("#text").readOnly`
)

func noteIs(text string) string {
	return `document.querySelector("#text").value === ` + jsString(text)
}

func jsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// notesAcrossTheLab is scenario 4: A shares a note with B and with C; B's
// user and C's user edit it in Chromium in their own homes, through their
// own nodes (B's reaches A through R, C's directly), and A's browser, in
// A's home, shows each edit live over the note's websocket.
func notesAcrossTheLab(t *testing.T, w *world) {
	const title = "Plans across the lab"
	g := w.a.NewGrain("notes", title)
	w.a.ShareWith(g, w.b, "editor")
	w.a.ShareWith(g, w.c, "editor")
	var onB, onC erg.Grain = w.b.Shared(title), w.c.Shared(title)

	start := time.Now()
	a := openIn(t, w.A.Host, w.a, g.ID)
	a.wait("A's note to connect", noteConnected, 30*time.Second)
	b := openIn(t, w.B.Host, w.b, onB.ID)
	b.wait("B's note, relayed to A, to connect", noteWritable, 60*time.Second)
	c := openIn(t, w.C.Host, w.c, onC.ID)
	c.wait("C's note, direct to A, to connect", noteWritable, 60*time.Second)
	t.Logf("three browsers connected to A's note %v after the first opened", time.Since(start).Round(time.Millisecond))

	b.typeAtEnd("Hello from bnode")
	a.wait("A to see B's edit live", noteIs("Hello from bnode"), 30*time.Second)
	c.wait("C to see B's edit live", noteIs("Hello from bnode"), 30*time.Second)
	c.typeAtEnd(", and from cnode")
	a.wait("A to see C's edit live", noteIs("Hello from bnode, and from cnode"), 30*time.Second)
	b.wait("B to see C's edit live", noteIs("Hello from bnode, and from cnode"), 30*time.Second)
	a.wait("A's page to say who edited last", `document.querySelector("#updated-by").textContent.includes("cnode")`, 10*time.Second)
}
