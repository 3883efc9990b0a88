package nodetest_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"erg/nodetest"
)

// TestStoryInProcess is the harness's story with in-process nodes: a
// shares a note with b, b's owner edits it through b, a revokes.
func TestStoryInProcess(t *testing.T) {
	t.Parallel()
	env := nodetest.New(t)
	a := env.Node("anode")
	b := env.Node("bnode", nodetest.Owner("bob"))
	env.Befriend(a, b)
	nodetest.Await(t, "anode to see bnode online", func() bool { return a.FriendOnline("bnode") })

	g := a.NewGrain("notes", "Plans")
	sh := a.ShareWith(g, b, "editor")
	w := b.Open(g)
	if code, body := putNote(w, "hello", 0); code != 200 || !strings.Contains(body, `"updatedBy":"bob@bnode"`) {
		t.Fatalf("bob's edit through bnode: %d %s", code, body)
	}
	if code, body := a.Open(g).Get("/api/note"); code != 200 || !strings.Contains(body, "hello") {
		t.Errorf("alice reads on anode: %d %s", code, body)
	}
	if err := a.Client().RevokeShare(context.Background(), sh.ID); err != nil {
		t.Fatal(err)
	}
	if code, body := w.Get("/api/note"); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Errorf("bnode after revocation: %d %s", code, body)
	}
}
