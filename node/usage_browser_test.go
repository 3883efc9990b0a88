package node

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"erg"
	"erg/internal/testkit"
)

// TestBrowserGrainUsage: the Grains page shows a grain's CPU time, memory
// against its limit and a warning when it nears the limit; the node's
// owner sets its CPU ceiling in the grain's menu, and All grains on the
// Users page shows the same figures. The same form sets its disk bound.
func TestBrowserGrainUsage(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	n.setUp(t)
	id, origin := n.newGrain("probe") // the probe's limit: 64 MiB
	if code, body := n.get(origin + "/memhog?keep=1&mb=40"); code != 200 {
		t.Fatalf("memhog: %d %s", code, body)
	}
	// Past 90% of the limit, counting what the app holds besides.
	use, err := n.grains.Usage(context.Background(), n.owner(), id)
	if err != nil {
		t.Fatal(err)
	}
	more := (int64(0.92*float64(use.MemoryLimitBytes)) - use.MemoryBytes + 1<<20 - 1) >> 20
	if code, body := n.get(origin + "/memhog?keep=1&mb=" + strconv.FormatInt(max(more, 1), 10)); code != 200 {
		t.Fatalf("memhog: %d %s", code, body)
	}
	// Lists show the 2 s usage sampler's figures: wait until it has seen
	// the grain past 90%, as a user reloading the page would.
	testkit.Await(t, "the grain's warning in the owner's list", func() bool {
		l, err := n.grains.Local(context.Background(), n.owner())
		return err == nil && slices.ContainsFunc(l, func(g erg.Grain) bool {
			return g.ID == id && g.Usage != nil && len(g.Usage.Warnings) > 0
		})
	})
	br := newBrowser(t, n)
	u := br.newUser()
	u.signIn(n)
	row := `[data-grain="` + id + `"] `
	u.do("the grains page", chromedp.Navigate(n.URL()+"/grains"), chromedp.WaitVisible(chromedp.CSS(row+`[data-testid=usage]`)))
	if s := u.text(row + `[data-testid=usage]`); !strings.Contains(s, "CPU ") || !strings.Contains(s, "of 64 MiB") || !strings.Contains(s, "no CPU ceiling") {
		t.Errorf("usage on the grains page: %q", s)
	}
	if w := u.text(row + `[data-testid=usage-warning]`); !strings.Contains(w, "memory at") {
		t.Errorf("warning on the grains page: %q", w)
	}
	u.screenshot("grain-usage")
	u.do("set a CPU ceiling",
		chromedp.Click(chromedp.CSS(row+`summary`)),
		chromedp.SetValue(chromedp.CSS(row+`[data-testid=cpu-percent]`), "50"),
		chromedp.SetValue(chromedp.CSS(row+`[data-testid=disk-mb]`), "200"),
		chromedp.Click(chromedp.CSS(row+`[data-testid=set-limits]`)))
	u.waitJS("the page with the ceiling", `(document.querySelector('`+row+`[data-testid=usage]')?.textContent || '').includes('CPU ceiling 50%')`)
	if rs, _ := n.grains.RunSpec(id); rs.Limits.CPUPercent != 50 {
		t.Errorf("the grain's next start gets a ceiling of %d%%", rs.Limits.CPUPercent)
	}
	if s := u.text(row + `[data-testid=usage]`); !strings.Contains(s, "of 200 MiB") {
		t.Errorf("after setting a disk bound of 200 MiB: %q", s)
	}
	u.do("all grains", chromedp.Navigate(n.URL()+"/users"), chromedp.WaitVisible(chromedp.CSS(row+`[data-testid=usage]`)))
	if s := u.text(row + `[data-testid=usage]`); !strings.Contains(s, "of 64 MiB") || !strings.Contains(s, "CPU ceiling 50%") {
		t.Errorf("usage in all grains: %q", s)
	}
	u.screenshot("all-grains-usage")
}
