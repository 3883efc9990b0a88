package node

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserBackupsAndRestoreThisNode: the owner makes a recovery code
// on the Backups page (behind the password), adds a directory and backs
// up; then a new node on an empty data dir becomes the old one with
// "Restore this node" on its setup page.
func TestBrowserBackupsAndRestoreThisNode(t *testing.T) {
	t.Parallel()
	a := startNode(t, nil)
	a.setUp(t)
	id, origin := a.newGrain("echo")
	a.get(origin + "/write?v=kept-by-the-backup")
	br := newBrowser(t, a)
	u := br.newUser()
	u.signIn(a)
	u.do("the grains page warns", chromedp.Navigate(a.URL()+"/grains"), chromedp.WaitVisible(chromedp.CSS(`[data-testid=backup-warning]`)))
	if w := u.text(`[data-testid=backup-warning]`); !strings.Contains(w, "recovery code") {
		t.Errorf("warning: %q", w)
	}
	u.do("a wrong password makes no code", chromedp.Navigate(a.URL()+"/backups"),
		chromedp.SetValue(chromedp.CSS(`[data-testid=code-password]`), "not the password"),
		chromedp.Click(chromedp.CSS(`[data-testid=make-code]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=error]`)))
	u.do("make a recovery code",
		chromedp.SetValue(chromedp.CSS(`[data-testid=code-password]`), ownerPassword),
		chromedp.Click(chromedp.CSS(`[data-testid=make-code]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=recovery-code]`)))
	code := u.value(`[data-testid=recovery-code]`)
	u.screenshot("backups-code")
	repo := filepath.Join(t.TempDir(), "usb")
	u.do("add a directory",
		chromedp.SetValue(chromedp.CSS(`[data-testid=destination-dir]`), repo),
		chromedp.Click(chromedp.CSS(`[data-testid=add-dir]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=notice]`)))
	// The notice of adding the directory is still shown: wait for the
	// backup's own, which replaces it once the run is over.
	u.do("back up now", chromedp.Click(chromedp.CSS(`[data-testid=backup-now]`)))
	u.waitJSFor("the backup's notice", noticeSays("Backed up"), time.Minute)
	if n := u.text(`[data-testid=notice]`); !strings.Contains(n, "Backed up 2 sources") {
		t.Fatalf("after backing up: %q", n)
	}
	if s := u.text(`[data-source="` + id + `"]`); strings.Contains(s, "never") {
		t.Errorf("the grain's row after a backup: %q", s)
	}
	u.screenshot("backups")
	nodeID := a.NodeID()
	a.Close()

	fresh := filepath.Join(t.TempDir(), "data")
	m := startNode(t, func(c *Config) { c.DataDir = fresh; c.AppsDir = "" })
	u.do("restore this node", chromedp.Navigate(m.SetupURL()),
		chromedp.SetValue(chromedp.CSS(`[data-testid=restore-node-code]`), code),
		chromedp.SetValue(chromedp.CSS(`[data-testid=restore-node-dir]`), repo),
		chromedp.Click(chromedp.CSS(`[data-testid=restore-node-submit]`)))
	u.waitJSFor("the restore's notice", noticeSays("grains"), time.Minute)
	if n := u.text(`[data-testid=notice]`); !strings.Contains(n, "with 1 grains") {
		t.Fatalf("after restoring: %q", n)
	}
	u.screenshot("restore-this-node")
	m.Close()
	m = startNode(t, func(c *Config) { c.DataDir = fresh; c.AppsDir = "" })
	if m.NodeID() != nodeID {
		t.Fatalf("the restored node is %s, was %s", m.NodeID(), nodeID)
	}
	if _, body := m.openAndGet(id, "/read"); body != "kept-by-the-backup" {
		t.Fatalf("the restored grain reads %q", body)
	}
	if _, err := os.Stat(filepath.Join(fresh, "restore-pending")); !os.IsNotExist(err) {
		t.Errorf("restore-pending left behind: %v", err)
	}
}

// noticeSays is a page condition: the notice shown contains text.
func noticeSays(text string) string {
	return `(document.querySelector('[data-testid=notice]')?.textContent || '').includes(` + strconv.Quote(text) + `)`
}
