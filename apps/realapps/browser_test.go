package realapps

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"erg/internal/browsertest"

	"erg/nodetest"
)

// browser is one headless Chromium for a test; each user is a tab in a
// browser context of its own, with its own cookies.
type browser struct {
	t    *testing.T
	root context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	root := browsertest.Start(t, browsertest.Path(t))
	return &browser{t: t, root: root}
}

// tab is one user's page.
type tab struct {
	t   *testing.T
	ctx context.Context
}

func (b *browser) newTab() *tab {
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		b.t.Fatal(err)
	}
	return &tab{t: b.t, ctx: ctx}
}

// open signs the tab in to grain g on node n and loads it, at the top
// level: the one-time link n prints for it.
func (u *tab) open(n *nodetest.Node, grainID string) {
	u.t.Helper()
	og, err := n.Client().OpenGrain(context.Background(), grainID)
	if err != nil {
		u.t.Fatalf("open %s on %s: %v", grainID, n.Name, err)
	}
	// The first request starts the grain, which for a real app may take
	// as long as the node allows (two minutes on a busy machine).
	ctx, cancel := context.WithTimeout(u.ctx, 150*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Navigate(og.URL)); err != nil {
		u.t.Fatalf("open grain %s on %s: %v", grainID, n.Name, err)
	}
}

func (u *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(u.ctx, chromedp.Location())
		u.t.Fatalf("%s (at %s): %v", what, loc, err)
	}
}

func evalJS[T any](u *tab, js string) T {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		u.t.Fatalf("evaluate %q: %v", js, err)
	}
	return v
}

// waitJS polls a JavaScript condition until it holds.
func (u *tab) waitJS(what, cond string) {
	u.t.Helper()
	// Long: a real app's page on a busy two-core machine may take a while
	// to connect and render.
	deadline := time.Now().Add(90 * time.Second)
	for {
		ok, err := chromedp.Run(u.ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			loc, _ := chromedp.Run(u.ctx, chromedp.Location())
			body, _ := chromedp.Run(u.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText.slice(0, 400) : ""`))
			u.t.Fatalf("waiting for %s (%s) at %s: %v; page: %q", what, cond, loc, err, strings.TrimSpace(body))
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// clickJS clicks the first element sel matches, from the page's script.
func clickJS(sel string) chromedp.Action[chromedp.Void] {
	return evalDo(`(() => { const e = document.querySelector(` + jsString(sel) + `); if (!e) throw new Error("no ` + strings.ReplaceAll(sel, `"`, `'`) + `"); e.click(); return true; })()`)
}

// evalDo runs a script that returns true.
func evalDo(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](js)(ctx, t)
		return err
	})
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
