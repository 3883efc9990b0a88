package node

import (
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserGrainCannotWriteToAnotherGrain: one user has grains X and Y
// (echo apps, whose /write stores a value). A script in X's frame shares
// the shell's partitioned cookie with Y's frame, and a GET it sends to Y
// does arrive signed in; but its fetch POST, its form POST and its
// websocket to Y are refused before Y sees them. Y's own page still
// writes and opens its websocket.
func TestBrowserGrainCannotWriteToAnotherGrain(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	n.setUp(t)
	br := newBrowser(t, n)
	u := br.newUser()
	u.signIn(n)
	x, err := n.grains.NewGrain(t.Context(), n.owner(), "echo", "X")
	if err != nil {
		t.Fatal(err)
	}
	y, err := n.grains.NewGrain(t.Context(), n.owner(), "echo", "Y")
	if err != nil {
		t.Fatal(err)
	}
	open := func(id string) *user {
		t.Helper()
		u.do("open grain "+id, chromedp.Navigate(n.URL()+"/grains/"+id), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
		f := u.frame(id)
		f.waitJS("the grain's page", `document.readyState === "complete" && document.documentElement.textContent.includes("hello from echo")`)
		return f
	}
	// Y's own page: a POST and a websocket of its own origin work.
	fy := open(y.ID)
	yOrigin := eval[string](fy, `location.origin`)
	if got := eval[string](fy, `fetch("/write?v=orig", {method: "POST", body: "x"}).then(r => fetch("/read")).then(r => r.text())`); got != "orig" {
		t.Fatalf("Y's own POST: %q", got)
	}
	if got := eval[string](fy, `new Promise(res => { const ws = new WebSocket(location.origin.replace("http", "ws") + "/ws");
		ws.onopen = () => { ws.close(); res("open") }; ws.onerror = () => res("error"); setTimeout(() => res("timeout"), 5000) })`); got != "open" {
		t.Fatalf("Y's own websocket: %s", got)
	}

	fx := open(x.ID)
	// A read from X's frame cannot see Y's answer (no CORS), so the test
	// reads Y's state from Y's frame below; but a GET from X does reach Y
	// signed in, which shows the cookie is shared and only the proxy's
	// check stops the writes.
	eval[bool](fx, fmt.Sprintf(`fetch(%q + "/write?v=control", {credentials: "include", mode: "no-cors"}).then(() => true)`, yOrigin))
	attack := fmt.Sprintf(`(async () => {
		const Y = %q, r = {};
		try { await fetch(Y + "/write?v=fetch", {method: "POST", credentials: "include", body: "x"}); r.fetch = "answered" } catch (e) { r.fetch = "error" }
		try { await fetch(Y + "/write?v=nocors", {method: "POST", credentials: "include", mode: "no-cors", body: "x"}); r.nocors = "sent" } catch (e) { r.nocors = "error" }
		const sink = document.createElement("iframe");
		sink.name = "sink";
		sink.style.display = "none";
		document.documentElement.appendChild(sink);
		const loaded = new Promise(res => { sink.onload = res; setTimeout(res, 5000) });
		const form = document.createElement("form");
		form.method = "POST";
		form.action = Y + "/write?v=form";
		form.target = "sink";
		const input = document.createElement("input");
		input.name = "text";
		input.value = "evil";
		form.appendChild(input);
		document.documentElement.appendChild(form);
		form.submit();
		await loaded;
		r.ws = await new Promise(res => {
			const ws = new WebSocket(Y.replace("http", "ws") + "/ws");
			ws.onopen = () => { ws.close(); res("open") };
			ws.onerror = () => res("error");
			setTimeout(() => res("timeout"), 5000);
		});
		return JSON.stringify(r);
	})()`, yOrigin)
	res := eval[string](fx, attack)
	t.Logf("from X's frame: %s", res)
	if res != `{"fetch":"error","nocors":"sent","ws":"error"}` {
		t.Errorf("the attacks from X: %s", res)
	}

	fy = open(y.ID)
	if got := eval[string](fy, `fetch("/read").then(r => r.text())`); got != "control" {
		t.Errorf("Y holds %q after X's attempts, want the control GET's value", got)
	}
}
