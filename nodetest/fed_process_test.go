package nodetest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"erg"
	"erg/nodetest"
)

func putNote(w *nodetest.Window, text string, base int) (int, string) {
	return w.Do(http.MethodPut, "/api/note", fmt.Sprintf(`{"title":"t","text":%q,"baseVersion":%d}`, text, base))
}

// TestFederationBetweenProcesses runs four nodes as separate processes:
// A shares a note with B (editor) and C (viewer); D is no one's friend.
func TestFederationBetweenProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := nodetest.New(t)
	tcp := nodetest.P2PListen("/ip4/127.0.0.1/tcp/0")
	a := env.Process("anode", tcp)
	if out := a.CLI("status"); !strings.Contains(out, "name      anode") {
		t.Errorf("status:\n%s", out)
	}
	boot := nodetest.Bootstrap(a.Status().P2PAddrs[:1]...)
	b := env.Process("bnode", nodetest.Owner("bob"), tcp, boot)
	c := env.Process("cnode", nodetest.Owner("carol"), tcp, boot)
	d := env.Process("dnode", nodetest.Owner("dan"), tcp, boot)

	for _, f := range []*nodetest.Node{b, c} {
		code := strings.TrimSpace(lastLine(a.CLI("friend", "invite")))
		if out := f.CLI("friend", "add", code); !strings.Contains(out, "now friends with anode") {
			t.Fatalf("friend add on %s: %s", f.Name, out)
		}
		if f == c {
			// The code was spent: the stranger cannot use it again.
			if out := d.CLIFails("friend", "add", code); !strings.Contains(out, "unknown, used or expired") {
				t.Errorf("a spent invite on dnode says: %s", out)
			}
		}
	}
	if out := a.CLI("friend", "ls"); !strings.Contains(out, "bnode") || !strings.Contains(out, "cnode") || strings.Contains(out, "dnode") {
		t.Errorf("friend ls on anode:\n%s", out)
	}
	if out := b.CLI("friend", "ls"); !strings.Contains(out, "anode  online") {
		t.Errorf("friend ls on bnode:\n%s", out)
	}

	var g erg.Grain
	json.Unmarshal([]byte(a.CLI("grain", "new", "notes", "--title", "Plans", "--json")), &g)
	var shB erg.Share
	json.Unmarshal([]byte(a.CLI("share", "new", g.ID, "--friend", "bnode", "--role", "editor", "--json")), &shB)
	if out := a.CLIFails("share", "new", g.ID, "--friend", "cnode", "--user", "nobody", "--role", "viewer"); !strings.Contains(out, `no user "nobody"`) {
		t.Errorf("a share for a missing user on cnode says: %s", out)
	}
	a.CLI("share", "new", g.ID, "--friend", "cnode", "--user", "carol", "--role", "viewer")
	if out := a.CLI("share", "ls", g.ID); !strings.Contains(out, "node bnode") || !strings.Contains(out, "carol@cnode") {
		t.Errorf("share ls on anode:\n%s", out)
	}
	if out := b.CLI("grain", "ls"); !strings.Contains(out, "Plans") {
		t.Errorf("grain ls on bnode:\n%s", out)
	}

	bw, cw := b.Open(g), c.Open(g)

	// B writes, as bob@bnode; C reads and cannot write.
	code, body := putNote(bw, "from bob", 0)
	if code != 200 || !strings.Contains(body, `"updatedBy":"bob@bnode"`) {
		t.Fatalf("bob's edit through bnode: %d %s", code, body)
	}
	if code, body := cw.Get("/api/note"); code != 200 || !strings.Contains(body, "from bob") {
		t.Errorf("carol reads through cnode: %d %s", code, body)
	}
	if code, body := putNote(cw, "from carol", 1); code != http.StatusForbidden {
		t.Errorf("carol, a viewer, wrote: %d %s", code, body)
	}

	// B's websocket is open when A revokes B's share: it ends within a
	// second, and B says why from then on.
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(bw.Origin, "http")+"/ws", &websocket.DialOptions{HTTPClient: bw.HTTP})
	if err != nil {
		t.Fatalf("websocket through bnode: %v", err)
	}
	defer ws.CloseNow()
	if _, _, err := ws.Read(ctx); err != nil {
		t.Fatal(err)
	}
	a.CLI("share", "rm", shB.ID)
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, _, err := ws.Read(rctx); err == nil || rctx.Err() != nil {
		t.Errorf("bnode's websocket after revocation: %v (deadline: %v)", err, rctx.Err())
	}
	if code, body := bw.Get("/api/note"); code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Errorf("bnode after revocation: %d %s", code, body)
	}
	if _, err := b.Client().OpenGrain(ctx, bw.ID); err == nil || !strings.Contains(err.Error(), "the owner revoked this share") {
		t.Errorf("opening the revoked grain on bnode: %v", err)
	}

	// A restarts on another port: C reconnects and restores by itself.
	a.Restart()
	nodetest.AwaitFor(t, 20*time.Second, "cnode to see anode again", func() bool { return c.FriendOnline("anode") })
	if code, body := cw.Get("/api/note"); code != 200 || !strings.Contains(body, "from bob") {
		t.Errorf("carol after anode restarted: %d %s", code, body)
	}
	if code, _ := putNote(cw, "from carol", 1); code != http.StatusForbidden {
		t.Errorf("carol wrote after the restart: %d", code)
	}
	// D is no one's friend: it has no shares and A lists it nowhere.
	if out := d.CLI("grain", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("dnode's grains: %s", out)
	}
	if out := d.CLI("friend", "ls"); !strings.Contains(out, "no friends") {
		t.Errorf("dnode's friends: %s", out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
