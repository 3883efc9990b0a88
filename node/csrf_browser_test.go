package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// postFormDataJS posts a FormData body to each of paths on node the way
// the attacks did: with the browser's cookies, no-cors, no CSRF token.
func postFormDataJS(node string, paths ...string) string {
	var b strings.Builder
	b.WriteString("(async () => {\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "{ const fd = new FormData(); fd.append('title', 'pwned'); fd.append('label', 'pwned');\n"+
			"  await fetch(%q, {method: 'POST', body: fd, credentials: 'include', mode: 'no-cors'}).catch(() => 0); }\n", node+p)
	}
	b.WriteString("return true; })()")
	return b.String()
}

// browserOwner sets the node up in a tab of b and returns the tab.
func browserOwner(t *testing.T, b *browser, n *testNode) *user {
	u := b.newUser()
	u.do("set up the owner",
		chromedp.Navigate(n.SetupURL()),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password]`), "correct horse battery"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password2]`), "correct horse battery"),
		chromedp.Click(chromedp.CSS(`[data-testid=setup-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)),
	)
	return u
}

// TestBrowserMultipartCSRF repeats, in a real Chromium, the attacks that
// once got through with a multipart body: a same-site page on another
// port, and a grain's own script on a node with its own domain, post
// FormData to the shell with the owner's cookies. Nothing changes.
func TestBrowserMultipartCSRF(t *testing.T) {
	t.Parallel()
	chromiumPath(t)
	ctx := context.Background()

	t.Run("a page on another port", func(t *testing.T) {
		n := startNode(t, nil) // the shell on http://localhost:PORT
		b := newBrowser(t, n)
		alice := browserOwner(t, b, n)
		g, err := n.grains.NewGrain(ctx, n.owner(), "echo", "before")
		if err != nil {
			t.Fatal(err)
		}
		before := n.state(t, g.ID)
		evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<!doctype html><title>cute cats</title>"))
		}))
		defer evil.Close()
		_, port, _ := net.SplitHostPort(evil.Listener.Addr().String())
		alice.do("visit the other page", chromedp.Navigate("http://localhost:"+port+"/"))
		eval[bool](alice, postFormDataJS(n.URL(), "/grains/"+g.ID+"/rename", "/settings/tokens"))
		if after := n.state(t, g.ID); !reflect.DeepEqual(after, before) {
			t.Errorf("a page on another port changed the node:\nbefore %+v\nafter  %+v", before, after)
		}
		// The same script from the shell's own pages, but without the
		// token, is refused too.
		alice.do("back to the shell", chromedp.Navigate(n.URL()+"/grains"))
		eval[bool](alice, postFormDataJS("", "/grains/"+g.ID+"/rename", "/settings/tokens"))
		if after := n.state(t, g.ID); !reflect.DeepEqual(after, before) {
			t.Errorf("a FormData post without the token changed the node:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("a grain on a custom domain", func(t *testing.T) {
		// erg.localhost and g-<id>.erg.localhost are one site, like erg.test
		// and its grains, and Chromium resolves both to loopback.
		n := startNode(t, func(c *Config) { c.Domain = "erg.localhost" })
		b := newBrowser(t, n)
		alice := browserOwner(t, b, n)
		g, err := n.grains.NewGrain(ctx, n.owner(), "echo", "before")
		if err != nil {
			t.Fatal(err)
		}
		before := n.state(t, g.ID)
		open, err := n.OpenGrain(ctx, n.owner(), g.ID)
		if err != nil {
			t.Fatal(err)
		}
		alice.do("open the grain on its own origin", chromedp.Navigate(open.URL))
		if loc := alice.location(); !strings.HasPrefix(loc, n.grainOrigin(g.ID)) {
			t.Fatalf("the grain's page is at %s", loc)
		}
		eval[bool](alice, postFormDataJS(n.URL(), "/grains/"+g.ID+"/rename", "/settings/tokens"))
		if after := n.state(t, g.ID); !reflect.DeepEqual(after, before) {
			t.Errorf("a grain's script changed the node:\nbefore %+v\nafter  %+v", before, after)
		}
		// The shell is still signed in: the refused posts did nothing.
		alice.do("back to the shell", chromedp.Navigate(n.URL()+"/grains"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)))
	})
}
