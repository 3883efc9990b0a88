package nodetest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"erg"
	"erg/nodetest"
)

// TestRestoreThisNodeThenRestart: A backs up to its friend B and is lost;
// `erg run` on an empty data dir, then "Restore this node" on its setup
// page with the code and B's invite; the next start adopts the restored
// node, and the one after keeps it all: the same peer id, users, grains
// and their contents, the share to B (B edits through it) and the
// friendship, and backups go on to B.
func TestRestoreThisNodeThenRestart(t *testing.T) {
	nodetest.SkipShort(t, "two erg processes")
	t.Parallel()
	env := nodetest.New(t)
	tcp := nodetest.P2PListen("/ip4/127.0.0.1/tcp/0")
	a := env.Process("anode", tcp)
	b := env.Process("bnode", nodetest.Owner("bob"), tcp, nodetest.Bootstrap(a.Status().P2PAddrs[:1]...))
	env.Befriend(a, b)
	const note = "PLANTED-RESTART-NOTE"
	var g erg.Grain
	json.Unmarshal([]byte(a.CLI("grain", "new", "notes", "--title", "Plans", "--json")), &g)
	if code, body := putNote(a.Open(g), note, 0); code != 200 {
		t.Fatalf("write the note: %d %s", code, body)
	}
	a.ShareWith(g, b, "editor")
	a.CLI("user", "invite", "dave")
	b.CLI("backup", "offer", "anode", "1")
	var rc erg.RecoveryCode
	json.Unmarshal([]byte(a.CLI("backup", "code", "--json")), &rc)
	a.CLI("backup", "dest", "add", "--friend", "bnode")
	if out := a.CLI("backup", "now"); !strings.Contains(out, "backed up") {
		t.Fatalf("backup now: %s", out)
	}
	peerID := a.Status().PeerID
	users, grains := usersAndGrains(a)
	if !strings.Contains(users, "dave(invited)") || !strings.Contains(grains, g.ID) {
		t.Fatalf("users %q and grains %q before", users, grains)
	}

	invite := strings.TrimSpace(lastLine(b.CLI("friend", "invite")))
	a.Kill()
	a.Wipe()
	a.Restart() // an empty data dir: a new node, waiting to be set up
	if a.Status().PeerID == peerID {
		t.Fatal("the new node has the lost one's peer id before any restore")
	}
	setup := a.SetupURL()
	u, err := url.Parse(setup)
	if setup == "" || err != nil {
		t.Fatalf("the new node's setup link: %q %v", setup, err)
	}
	form := url.Values{"token": {u.Query().Get("token")}, "code": {rc.Code}, "friend": {invite}}
	req, _ := http.NewRequest(http.MethodPost, a.Status().URL+"/setup/restore", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", a.Status().URL)
	resp, err := a.Browser().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page := readAll(resp)
	if resp.StatusCode != 200 || !strings.Contains(page, "with 1 grains") {
		t.Fatalf("restore this node: %s\n%s", resp.Status, page)
	}

	for i := range 2 { // the start that adopts it, then one more
		a.Restart()
		if got := a.Status().PeerID; got != peerID {
			t.Fatalf("start %d: peer id %s, was %s", i, got, peerID)
		}
		if u, g := usersAndGrains(a); u != users || g != grains {
			t.Errorf("start %d: users %s and grains %s, were %s and %s", i, u, g, users, grains)
		}
		if _, body := a.Open(g).Get("/api/note"); !strings.Contains(body, note) {
			t.Fatalf("start %d: the grain reads %s", i, body)
		}
		nodetest.Await(t, "anode and bnode to see each other", func() bool { return a.FriendOnline("bnode") && b.FriendOnline("anode") })
	}
	if code, body := putNote(b.Open(g), "bob after the restore", 1); code != 200 {
		t.Fatalf("bob edits the restored grain: %d %s", code, body)
	}
	if _, body := a.Open(g).Get("/api/note"); !strings.Contains(body, "bob after the restore") {
		t.Fatalf("the owner reads bob's edit: %s", body)
	}
	if out := a.CLI("backup", "now"); !strings.Contains(out, "backed up") {
		t.Fatalf("backup now after the restore: %s", out)
	}
}

// usersAndGrains names a node's users and invites, and its grains with
// their titles.
func usersAndGrains(n *nodetest.Node) (users, grains string) {
	var us struct {
		Users   []erg.User   `json:"users"`
		Invites []erg.Invite `json:"invites"`
	}
	json.Unmarshal([]byte(n.CLI("user", "ls", "--json")), &us)
	var gs []erg.Grain
	json.Unmarshal([]byte(n.CLI("grain", "ls", "--json")), &gs)
	for _, u := range us.Users {
		users += u.Username + " "
	}
	for _, inv := range us.Invites {
		users += inv.Username + "(invited) "
	}
	for _, g := range gs {
		grains += g.ID + "=" + g.Title + " "
	}
	return users, grains
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
