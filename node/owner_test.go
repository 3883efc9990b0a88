package node

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/internal/testkit"
	"erg/webui"
)

// bobsGrain has bob make an echo grain over the API, sign in to it and
// write to its /var, so it is running and holds data.
func bobsGrain(t *testing.T, bob *web, title string) (erg.Grain, string) {
	t.Helper()
	code, body := bob.api("POST", "/api/grains", erg.NewGrainRequest{App: "echo", Title: title})
	var g erg.Grain
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &g) != nil {
		t.Fatalf("bob's new grain: %d %s", code, body)
	}
	if code, body := bob.get(g.URL); code != http.StatusSeeOther && code != http.StatusOK {
		t.Fatalf("bob's grain login: %d %s", code, body)
	}
	origin := strings.Split(g.URL, "/_erg")[0]
	if code, body := bob.get(origin + "/write?v=" + strings.Repeat("x", 5000)); code != 200 {
		t.Fatalf("bob's write: %d %s", code, body)
	}
	return g, origin
}

func findNodeGrain(gs []erg.NodeGrain, id string) *erg.NodeGrain {
	for i := range gs {
		if gs[i].ID == id {
			return &gs[i]
		}
	}
	return nil
}

func TestOwnerSeesAndRemovesEveryGrain(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	alice := n.setUp(t)
	bob := n.join(t, "bob")
	ctx := context.Background()
	ag, err := n.grains.NewGrain(ctx, alice.user(), "echo", "alice's")
	if err != nil {
		t.Fatal(err)
	}
	bg, origin := bobsGrain(t, bob, "bob's big one")
	if _, err := n.shares.New(ctx, bob.user(), bg.ID, erg.ShareRequest{Role: "editor"}); err != nil {
		t.Fatal(err)
	}
	// A symlink out of the grain counts as a link, not what it points at.
	big := filepath.Join(t.TempDir(), "big")
	os.WriteFile(big, make([]byte, 1<<20), 0o600)
	os.Symlink(big, filepath.Join(n.grains.Dir(bg.ID), "var", "link"))

	// The owner sees every grain, with its owner, app, size and state.
	code, body := alice.api("GET", "/api/grains?all=1", nil)
	var all []erg.NodeGrain
	if code != 200 || json.Unmarshal([]byte(body), &all) != nil {
		t.Fatalf("all grains: %d %s", code, body)
	}
	got := findNodeGrain(all, bg.ID)
	if got == nil || findNodeGrain(all, ag.ID) == nil || len(all) != 2 {
		t.Fatalf("all grains: %s", body)
	}
	if got.Owner != "bob" || got.AppID != "echo" || got.AppName != "Echo" || got.Title != "bob's big one" || !got.Running || got.Mine {
		t.Errorf("bob's grain in the owner's list: %+v", got)
	}
	if got.Size < 5000 || got.Size >= 1<<20 || got.Usage == nil || got.Size != got.Usage.DiskBytes {
		t.Errorf("bob's grain size = %d, want its 5000-byte file and a link on disk, as its usage says (%+v)", got.Size, got.Usage)
	}
	if a := findNodeGrain(all, ag.ID); a.Owner != "alice" || !a.Mine || a.Running {
		t.Errorf("alice's grain in the list: %+v", a)
	}
	// Her own list is still her own.
	if _, body := alice.api("GET", "/api/grains", nil); strings.Contains(body, bg.ID) {
		t.Errorf("alice's own list has bob's grain: %s", body)
	}

	// Bob may neither see the list nor learn of alice's grain.
	if code, body := bob.api("GET", "/api/grains?all=1", nil); code != http.StatusForbidden {
		t.Errorf("bob: all grains = %d %s, want 403", code, body)
	}
	if code, _ := bob.get("/users/grains/" + ag.ID + "/delete"); code != http.StatusForbidden {
		t.Errorf("bob: the delete confirm = %d, want 403", code)
	}
	if code, _ := bob.post("/users/grains/"+ag.ID+"/delete", nil); code != http.StatusForbidden {
		t.Errorf("bob: the owner's delete = %d, want 403", code)
	}
	for _, id := range []string{ag.ID, "nosuchgrain"} {
		if code, body := bob.api("DELETE", "/api/grains/"+id, nil); code != http.StatusNotFound {
			t.Errorf("bob: DELETE %s = %d %s, want 404", id, code, body)
		}
	}
	if _, err := n.grains.Lookup(ag.ID); err != nil {
		t.Fatal("alice's grain is gone")
	}

	// The users page lists it, with the disk it takes; deleting asks first
	// and needs the CSRF token.
	if code, body := alice.get("/users"); code != 200 || !strings.Contains(body, bg.ID) || !strings.Contains(body, "bob&#39;s big one") ||
		!strings.Contains(body, webui.FormatSize(got.Size)+" on disk") {
		t.Errorf("users page: %d\n%s", code, body)
	}
	if code, body := alice.get("/users/grains/" + bg.ID + "/delete"); code != 200 || !strings.Contains(body, `action="/users/grains/`+bg.ID+`/delete"`) {
		t.Errorf("delete confirm: %d\n%s", code, body)
	}
	if code, _ := alice.post("/users/grains/"+bg.ID+"/delete", url.Values{"csrf": {"forged"}}); code != http.StatusForbidden {
		t.Errorf("delete with a forged CSRF token: %d", code)
	}
	if code, body := alice.post("/users/grains/"+bg.ID+"/delete", nil); code != http.StatusSeeOther {
		t.Fatalf("delete: %d %s", code, body)
	}
	if _, err := os.Stat(n.grains.Dir(bg.ID)); !os.IsNotExist(err) {
		t.Errorf("bob's grain storage is still there: %v", err)
	}
	if n.grains.Running(bg.ID) {
		t.Error("bob's grain still runs")
	}
	var shares int
	n.db.QueryRow(`SELECT count(*) FROM shares WHERE grain_id = ?`, bg.ID).Scan(&shares)
	if shares != 0 {
		t.Errorf("%d shares of the deleted grain are left", shares)
	}
	if code, _ := bob.get(origin + "/read"); code != http.StatusNotFound {
		t.Errorf("bob's session on the deleted grain: %d, want 404", code)
	}
	if _, body := bob.api("GET", "/api/grains", nil); strings.Contains(body, bg.ID) {
		t.Errorf("bob still lists it: %s", body)
	}
	if code, _ := alice.post("/users/grains/"+bg.ID+"/delete", nil); code != http.StatusNotFound {
		t.Errorf("deleting it again: %d, want 404", code)
	}
}

// ergWeb is a browser-like client of an `erg run` process's web port.
func ergWeb(t *testing.T, p *ergProcess) (*web, string) {
	t.Helper()
	var st struct{ Status erg.Status }
	json.Unmarshal([]byte(p.erg(false, "status", "--json")), &st)
	u, err := url.Parse(st.Status.URL)
	if err != nil || u.Port() == "" {
		t.Fatalf("status URL %q", st.Status.URL)
	}
	addr := net.JoinHostPort("127.0.0.1", u.Port())
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar: testkit.LocalhostJar{CookieJar: jar},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
	return &web{t: t, c: c, base: st.Status.URL}, st.Status.URL
}

func TestCLIOwnerListsAndRemovesEveryGrain(t *testing.T) {
	t.Parallel()
	data := filepath.Join(t.TempDir(), "data")
	p := startErg(t, data)
	var mine erg.Grain
	json.Unmarshal([]byte(p.erg(false, "grain", "new", "echo", "--title", "alice's", "--json")), &mine)
	var inv erg.Invite
	json.Unmarshal([]byte(p.erg(false, "user", "invite", "bob", "--json")), &inv)

	bob, base := ergWeb(t, p)
	if code, body := bob.post(strings.TrimPrefix(inv.URL, base), url.Values{"password": {"bob password"}, "password2": {"bob password"}}); code != http.StatusSeeOther {
		t.Fatalf("join: %d %s", code, body)
	}
	bob.get("/grains")
	bg, _ := bobsGrain(t, bob, "bob's")

	var all []erg.NodeGrain
	if err := json.Unmarshal([]byte(p.erg(false, "grain", "ls", "--all", "--json")), &all); err != nil {
		t.Fatal(err)
	}
	got := findNodeGrain(all, bg.ID)
	if got == nil || findNodeGrain(all, mine.ID) == nil {
		t.Fatalf("grain ls --all --json: %+v", all)
	}
	if got.Owner != "bob" || got.AppID != "echo" || got.Size < 5000 || !got.Running {
		t.Errorf("bob's grain: %+v", got)
	}
	sc := bufio.NewScanner(strings.NewReader(p.erg(false, "grain", "ls", "--all")))
	var line string
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), bg.ID) {
			line = sc.Text()
		}
	}
	if !strings.Contains(line, "bob") || !strings.Contains(line, "Echo") || !strings.Contains(line, "KiB") || !strings.Contains(line, "running") {
		t.Errorf("grain ls --all has for bob's grain: %q", line)
	}

	// Bob, with an API token, is refused the list and alice's grain.
	code, body := bob.api("POST", "/api/tokens", erg.TokenRequest{Label: "cli"})
	var tok erg.APIToken
	if code != http.StatusCreated || json.Unmarshal([]byte(body), &tok) != nil {
		t.Fatalf("bob's token: %d %s", code, body)
	}
	bobCLI := p.overHTTP(base, tok.Token)
	if out := bobCLI.erg(true, "grain", "ls", "--all"); !strings.Contains(out, "only the node's owner") {
		t.Errorf("bob: grain ls --all: %s", out)
	}
	if out := bobCLI.erg(true, "grain", "rm", mine.ID); !strings.Contains(out, "no grain") {
		t.Errorf("bob: grain rm of alice's: %s", out)
	}

	// The owner removes it over the control socket.
	p.erg(false, "grain", "rm", bg.ID)
	if _, err := os.Stat(filepath.Join(data, grainsDir, bg.ID)); !os.IsNotExist(err) {
		t.Errorf("bob's grain storage is still there: %v", err)
	}
	if _, body := bob.api("GET", "/api/grains", nil); strings.Contains(body, bg.ID) {
		t.Errorf("bob still lists it: %s", body)
	}
	if out := p.erg(false, "grain", "ls", "--all"); strings.Contains(out, bg.ID) || !strings.Contains(out, mine.ID) {
		t.Errorf("grain ls --all after rm:\n%s", out)
	}
}
