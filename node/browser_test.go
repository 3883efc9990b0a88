package node

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"erg/apppkg"
	"erg/internal/browsertest"
	"erg/internal/testkit"
)

// noteIcon is an icon for the notes package the browser test installs.
const noteIcon = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><rect width="40" height="40" rx="9" fill="#f2b705"/>` +
	`<rect x="10" y="9" width="20" height="23" rx="2" fill="#fff"/><path d="M14 16h12M14 21h12M14 26h8" stroke="#b58600" stroke-width="2"/></svg>`

// packApp packs one of the test apps as a signed package file; icon, if
// not empty, is added as the app's SVG icon.
func packApp(t *testing.T, name string, key ed25519.PrivateKey, version int64, icon string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name+".erg")
	if err := os.WriteFile(out, packTestApp(t, name, key, version, "", icon), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// chromiumPath finds Debian's chromium (which .ci/run installs).
func chromiumPath(t *testing.T) string {
	testkit.SkipShort(t, "browser tests")
	return browsertest.Path(t)
}

// browser is a test's part of the test process's shared headless
// Chromium (a browser context of its own); each user gets a tab in a
// browser context of its own (its own cookies).
type browser struct {
	t    *testing.T
	root context.Context
	node *testNode
	shot string // screenshot dir; none unless ERG_SCREENSHOTS names one
}

func newBrowser(t *testing.T, n *testNode) *browser {
	testkit.SkipShort(t, "browser tests")
	root := browsertest.Shared(t)
	shot := os.Getenv("ERG_SCREENSHOTS")
	if shot != "" {
		os.MkdirAll(shot, 0o755)
		t.Logf("screenshots in %s", shot)
	}
	return &browser{t: t, root: root, node: n, shot: shot}
}

// user is one person's tab.
type user struct {
	b   *browser
	ctx context.Context
}

func (b *browser) newUser() *user {
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		b.t.Fatal(err)
	}
	return &user{b: b, ctx: ctx}
}

// do runs steps with a deadline, failing the test with what was going on.
func (u *user) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	u.b.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(u.ctx, chromedp.Location())
		u.b.t.Fatalf("%s (at %s): %v", what, loc, err)
	}
}

func eval[T any](u *user, js string) T {
	u.b.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		u.b.t.Fatalf("evaluate %q: %v", js, err)
	}
	return v
}

func (u *user) location() string {
	u.b.t.Helper()
	loc, err := chromedp.Run(u.ctx, chromedp.Location())
	if err != nil {
		u.b.t.Fatal(err)
	}
	return loc
}

func (u *user) text(sel string) string {
	u.b.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		u.b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

func (u *user) value(sel string) string {
	u.b.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS(sel)))
	if err != nil {
		u.b.t.Fatalf("value of %s: %v", sel, err)
	}
	return s
}

// frame attaches to the grain's frame. The grain's origin is another site
// than the shell, so Chrome runs the frame as a target of its own.
func (u *user) frame(grainID string) *user {
	u.b.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		infos, err := chromedp.Targets(u.ctx)
		if err != nil {
			u.b.t.Fatal(err)
		}
		for _, info := range infos {
			if info.Type == "iframe" && info.BrowserContextID == u.browserContext() &&
				strings.Contains(info.URL, "//g-"+grainID+".") && !strings.Contains(info.URL, "/_erg/login") {
				ctx, cancel := chromedp.NewContext(u.ctx, chromedp.WithTargetID(info.TargetID))
				u.b.t.Cleanup(cancel)
				return &user{b: u.b, ctx: ctx}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	u.b.t.Fatalf("no frame of grain %s", grainID)
	return nil
}

func (u *user) browserContext() cdp.BrowserContextID {
	return chromedp.FromContext(u.ctx).BrowserContextID
}

// settle waits until the page has painted twice. Chrome routes a mouse
// click by what the compositor last painted; right after a modal dialog
// opens over the grain's frame (another process), a click at the dialog
// could still go to the frame.
func (u *user) settle() {
	u.b.t.Helper()
	eval[bool](u, `new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => setTimeout(() => r(true), 50))))`)
}

// waitJS polls a JavaScript condition until it holds.
func (u *user) waitJS(what, cond string) {
	u.b.t.Helper()
	u.waitJSFor(what, cond, 15*time.Second)
}

// waitJSFor is waitJS for work that may take longer than a page step.
func (u *user) waitJSFor(what, cond string, d time.Duration) {
	u.b.t.Helper()
	deadline := time.Now().Add(d)
	for {
		ok, err := chromedp.Run(u.ctx, chromedp.Evaluate[bool](cond))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			u.b.t.Fatalf("waiting for %s (%s): %v", what, cond, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// screenshot saves the page at a desktop and a phone width, when
// ERG_SCREENSHOTS names a dir for them (docs/screenshots is made so):
// they are for people to look at, and cost a test run seconds.
func (u *user) screenshot(name string) {
	u.b.t.Helper()
	if u.b.shot == "" {
		return
	}
	for _, size := range []struct {
		suffix        string
		width, height int64
		mobile        bool
	}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}} {
		var png []byte
		u.do("screenshot "+name,
			chromedp.EmulateViewport(size.width, size.height, func(p *emulation.SetDeviceMetricsOverrideParams, touch *emulation.SetTouchEmulationEnabledParams) {
				p.Mobile = size.mobile
				p.DeviceScaleFactor = 1
			}),
			chromedp.Sleep(100*time.Millisecond),
			chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
				var err error
				png, err = chromedp.FullScreenshot(100)(ctx, t)
				return err
			}),
		)
		if err := os.WriteFile(filepath.Join(u.b.shot, name+"-"+size.suffix+".png"), png, 0o644); err != nil {
			u.b.t.Fatal(err)
		}
	}
	u.do("desktop size", chromedp.EmulateViewport(1280, 800))
}

func grainIDFromURL(t *testing.T, loc string) string {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	id, ok := strings.CutPrefix(u.Path, "/grains/")
	if !ok || id == "" || strings.Contains(id, "/") {
		t.Fatalf("not a grain page: %s", loc)
	}
	return id
}

// TestBrowser walks through the web UI the way people use it, in a real
// headless Chromium: the owner sets the node up, installs a signed package
// by upload, writes a note and shares it read-only; a visitor reads it but
// cannot write, and is cut off when the link is revoked. An invited user
// joins; a backup restores with its content; the grain's frame is its own
// origin and cannot read the shell's cookies.
func TestBrowser(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AppsDir = ""; c.Owner = "alice" })
	key, _ := apppkg.GenerateKey()
	pkg := packApp(t, "notes", key, 1, noteIcon)
	b := newBrowser(t, n)
	base := n.URL()

	// Setup: a fresh node sends visitors to the setup link only.
	alice := b.newUser()
	alice.do("open the node", chromedp.Navigate(base+"/"))
	if !strings.Contains(alice.text("main"), "setup link") {
		t.Fatalf("a fresh node's front page: %q", alice.text("main"))
	}
	alice.do("set up the owner",
		chromedp.Navigate(n.SetupURL()),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password]`), "correct horse battery"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=setup-password2]`), "correct horse battery"),
	)
	alice.screenshot("setup")
	alice.do("submit setup", chromedp.Click(chromedp.CSS(`[data-testid=setup-submit]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)))
	if got := alice.text(`[data-testid=me]`); got != "alice" {
		t.Fatalf("signed in as %q", got)
	}

	// Install the signed notes package by upload.
	alice.do("install by upload",
		chromedp.Navigate(base+"/apps"),
		chromedp.SetUploadFiles(chromedp.CSS(`[data-testid=package-file]`), []string{pkg}),
		chromedp.Click(chromedp.CSS(`[data-testid=install-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=notice]`)),
	)
	if got := alice.text(`[data-testid=notice]`); !strings.Contains(got, "Installed Notes") {
		t.Fatalf("after the upload: %q", got)
	}
	alice.waitJS("the app's icon", `document.querySelector("img.appicon") && document.querySelector("img.appicon").naturalWidth > 0`)
	alice.screenshot("apps")

	// Create a note and type in it.
	alice.do("new note", chromedp.Navigate(base+"/grains"), chromedp.Click(chromedp.CSS(`[data-testid=new-Notes]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	id := grainIDFromURL(t, alice.location())
	note := alice.frame(id)
	note.waitJS("the note's websocket", `document.querySelector("#status").dataset.state === "connected" && !document.querySelector("#text").readOnly`)
	note.do("type", chromedp.SendKeys(chromedp.CSS(`#text`), "Hello from alice"))
	note.waitJS("the note to save", `document.querySelector("#status").textContent === "Connected" && document.querySelector("#updated-by").textContent.includes("alice")`)

	// The frame is its own origin, and its scripts cannot read the shell's
	// cookies or call the shell's API as the user.
	shellOrigin := strings.TrimSuffix(base, "/")
	if got := eval[string](note, `location.origin`); got == shellOrigin || !strings.HasPrefix(got, "http://g-"+id+".") {
		t.Errorf("the grain frame's origin is %q (shell %q)", got, shellOrigin)
	}
	if got := eval[string](alice, `location.origin`); got != shellOrigin {
		t.Errorf("the shell's origin is %q, want %q", got, shellOrigin)
	}
	if got := eval[string](note, `document.cookie`); strings.Contains(got, "erg_") {
		t.Errorf("a grain script reads cookies %q", got)
	}
	if got := eval[string](note, fmt.Sprintf(`fetch(%q, {credentials: "include"}).then(r => r.text(), e => "blocked")`, shellOrigin+"/api/me")); got != "blocked" {
		t.Errorf("a grain script read the shell's API: %q", got)
	}
	if got := eval[string](note, fmt.Sprintf(`fetch(%q, {method: "POST", credentials: "include", mode: "no-cors", body: "x"}).then(() => "sent", e => "blocked")`, shellOrigin+"/grains/"+id+"/delete")); got == "" {
		t.Error("no answer from a cross-origin post")
	}
	if _, err := n.grains.Lookup(id); err != nil {
		t.Fatalf("a grain's script deleted its grain through the shell: %v", err)
	}

	// Share it read-only, without sign-in.
	alice.waitJS("the shell's script", `document.readyState === "complete"`)
	alice.do("open the share dialog", chromedp.Click(chromedp.CSS(`[data-testid=share-button]`)))
	alice.waitJS("a modal share dialog", `document.querySelector("#share").matches(":modal")`)
	alice.settle()
	alice.do("allow anonymous use", chromedp.Click(chromedp.CSS(`[data-testid=share-anonymous]`)))
	alice.waitJS("the anonymous box to be ticked", `document.querySelector("[data-testid=share-anonymous]").checked`)
	alice.do("create the link", chromedp.Click(chromedp.CSS(`[data-testid=share-create]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-url]`)))
	link := alice.value(`[data-testid=share-url]`)
	if !strings.HasPrefix(link, base+"/s/") {
		t.Fatalf("share link %q", link)
	}
	alice.screenshot("share")

	// A visitor in another browser context reads, and cannot write.
	visitor := b.newUser()
	visitor.do("open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	seen := visitor.frame(id)
	seen.waitJS("the visitor to see the note", `document.querySelector("#text").value === "Hello from alice" && document.querySelector("#status").dataset.state === "connected"`)
	if ro := eval[bool](seen, `document.querySelector("#text").readOnly`); !ro {
		t.Error("the viewer can edit the note")
	}
	if got := eval[float64](seen, `fetch("/api/note", {method: "PUT", body: JSON.stringify({title: "x", text: "defaced", baseVersion: 1})}).then(r => r.status)`); got != 403 {
		t.Errorf("a viewer's write: HTTP %v, want 403", got)
	}
	if got := eval[string](seen, `document.cookie`); got != "" {
		t.Errorf("the grain sees cookies %q", got)
	}
	visitor.screenshot("shared-view")

	// Revoke: the visitor's websocket closes and their next request is refused.
	alice.do("reopen the dialog", chromedp.Navigate(base+"/grains/"+id+"?share=1"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=revoke]`)))
	alice.settle()
	alice.do("revoke", chromedp.Click(chromedp.CSS(`[data-testid=revoke]`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-create]`)))
	seen.waitJS("the visitor's websocket to close", `document.querySelector("#status").dataset.state !== "connected"`)
	if got := eval[float64](seen, `fetch("/api/note").then(r => r.status)`); got != 403 {
		t.Errorf("after revocation the visitor's request: HTTP %v, want 403", got)
	}
	visitor.do("reload the link", chromedp.Navigate(link))
	if got := visitor.text("main"); !strings.Contains(got, "revoked") {
		t.Errorf("the revoked link shows %q", got)
	}

	// Invite bob, who joins, signs out and signs in again.
	alice.do("invite bob", chromedp.Navigate(base+"/users"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=invite-name]`), "bob"),
		chromedp.Click(chromedp.CSS(`[data-testid=invite-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=invite-url]`)),
	)
	invite := alice.value(`[data-testid=invite-url]`)
	alice.screenshot("users")
	bob := b.newUser()
	bob.do("accept the invite", chromedp.Navigate(invite),
		chromedp.SetValue(chromedp.CSS(`[data-testid=invite-password]`), "bobs password"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=invite-password2]`), "bobs password"),
		chromedp.Click(chromedp.CSS(`[data-testid=invite-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)),
	)
	if got := bob.text(`[data-testid=me]`); got != "bob" {
		t.Fatalf("after joining: signed in as %q", got)
	}
	bob.do("sign out", chromedp.Click(chromedp.CSS(`form.me button`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=login-submit]`)))
	bob.screenshot("login")
	bob.do("sign in", chromedp.SetValue(chromedp.CSS(`[data-testid=login-username]`), "bob"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=login-password]`), "bobs password"),
		chromedp.Click(chromedp.CSS(`[data-testid=login-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=me]`)),
	)

	bob.do("settings", chromedp.Navigate(base+"/settings"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=password-submit]`)))
	bob.screenshot("settings")

	// Alice shares the note with bob as an editor; bob finds it under
	// "Shared with me" and the grain knows him by name.
	alice.do("open the dialog again", chromedp.Navigate(base+"/grains/"+id+"?share=1"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-create]`)))
	alice.settle()
	alice.do("share with bob",
		chromedp.SetValue(chromedp.CSS(`[data-testid=share-role]`), "editor"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=share-user]`), "bob"),
		chromedp.Click(chromedp.CSS(`[data-testid=share-create]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=share-url]`)),
	)
	bob.do("bob's grains", chromedp.Navigate(base+"/grains"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=shared-grains]`)))
	bob.do("open the shared note", chromedp.Click(chromedp.CSS(`[data-testid=shared-grains] a`)), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	alice.do("reopen the note", chromedp.Navigate(base+"/grains/"+id), chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)))
	note = alice.frame(id)
	note.waitJS("alice's note to connect", `document.querySelector("#status").dataset.state === "connected"`)
	bobNote := bob.frame(id)
	bobNote.waitJS("bob can edit", `document.querySelector("#status").dataset.state === "connected" && !document.querySelector("#text").readOnly`)
	bobNote.do("bob types", chromedp.SendKeys(chromedp.CSS(`#text`), " and bob"))
	bobNote.waitJS("bob's edit to save", `document.querySelector("#updated-by").textContent.includes("bob")`)
	note.waitJS("alice to see bob's edit live", `document.querySelector("#text").value === "Hello from alice and bob"`)

	// Backup and restore through the pages: the restored grain holds the note.
	alice.do("grains page", chromedp.Navigate(base+"/grains"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=my-grains]`)))
	alice.screenshot("grains")
	zipB64 := eval[string](alice, fmt.Sprintf(`fetch("/grains/%s/backup").then(r => r.ok ? r.arrayBuffer() : Promise.reject(r.status)).then(b => {
		let s = ""; for (const c of new Uint8Array(b)) s += String.fromCharCode(c); return btoa(s); })`, id))
	zipData, err := base64.StdEncoding.DecodeString(zipB64)
	if err != nil {
		t.Fatal(err)
	}
	zipPath := filepath.Join(t.TempDir(), "note.zip")
	os.WriteFile(zipPath, zipData, 0o644)
	alice.do("restore", chromedp.SetUploadFiles(chromedp.CSS(`[data-testid=restore-file]`), []string{zipPath}),
		chromedp.Click(chromedp.CSS(`[data-testid=restore-submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=grain-frame]`)),
	)
	restored := grainIDFromURL(t, alice.location())
	if restored == id {
		t.Fatal("restore reopened the old grain")
	}
	alice.frame(restored).waitJS("the restored note", `document.querySelector("#text") && document.querySelector("#text").value === "Hello from alice and bob"`)
}
