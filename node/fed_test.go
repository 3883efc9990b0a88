package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"erg/webui"
)

// befriend makes a and b friends through an invite a made.
func befriend(t testing.TB, a, b *testNode) {
	t.Helper()
	ctx := context.Background()
	inv, err := a.NewFriendInvite(ctx, a.owner())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddFriend(ctx, b.owner(), inv.Code); err != nil {
		t.Fatal(err)
	}
}

// sharedWith finds the grain a friend shared with b's user who.
func sharedWith(t testing.TB, b *testNode, who webui.User, title string) webui.Grain {
	t.Helper()
	gs, err := b.Grains(context.Background(), who)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range gs {
		if g.From != "" && g.Title == title {
			return g
		}
	}
	t.Fatalf("no grain %q shared with %s on %s: %+v", title, who.Username, b.NodeName(), gs)
	return webui.Grain{}
}

// openOn signs b's test client in to a grain's origin on b and returns
// the origin.
func openOn(t testing.TB, b *testNode, who webui.User, id string) string {
	t.Helper()
	g, err := b.OpenGrain(context.Background(), who, id)
	if err != nil {
		t.Fatal(err)
	}
	code, body := b.get(g.URL)
	if code != 200 {
		t.Fatalf("login to %s: %d %s", id, code, body)
	}
	origin, _, _ := strings.Cut(g.URL, "/_erg/")
	return origin
}

func putNote(t testing.TB, c *http.Client, origin, text string, base int) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, origin+"/api/note", strings.NewReader(fmt.Sprintf(`{"title":"t","text":%q,"baseVersion":%d}`, text, base)))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestFriendShareInProcess(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	befriend(t, a, b)
	fs, err := a.Friends(ctx, a.owner())
	if err != nil || len(fs) != 1 || fs[0].Name != "bnode" || !fs[0].Online {
		t.Fatalf("a's friends: %+v %v", fs, err)
	}
	g, err := a.NewGrain(ctx, a.owner(), "notes", "Plans")
	if err != nil {
		t.Fatal(err)
	}
	sh, err := a.NewShare(ctx, a.owner(), g.ID, webui.ShareRequest{Role: "editor", Friend: "bnode"})
	if err != nil {
		t.Fatal(err)
	}
	rg := sharedWith(t, b, b.owner(), "Plans")
	if rg.Owner != "alice@anode" || rg.Role != "editor" {
		t.Errorf("shared grain on b: %+v", rg)
	}
	origin := openOn(t, b, b.owner(), rg.ID)
	code, body := putNote(t, b.http, origin, "hello", 0)
	if code != 200 {
		t.Fatalf("put through b: %d %s", code, body)
	}
	var n struct{ UpdatedBy, Text string }
	json.Unmarshal([]byte(body), &n)
	if n.UpdatedBy != "bob@bnode" {
		t.Errorf("a's grain saw %q, want bob@bnode", n.UpdatedBy)
	}
	start := time.Now()
	if err := a.RevokeShare(ctx, a.owner(), sh.ID); err != nil {
		t.Fatal(err)
	}
	code, body = b.get(origin + "/api/note")
	if code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Errorf("after revoke: %d %s", code, body)
	}
	t.Log("revoked in", time.Since(start))
}
