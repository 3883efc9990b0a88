package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"capnproto.org/go/capnp/v3/rpc"
	"github.com/coder/websocket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/fed"
	"erg/internal/testkit"
)

// befriend makes a and b friends through an invite a made.
func befriend(t testing.TB, a, b *testNode) {
	t.Helper()
	ctx := context.Background()
	inv, err := a.friends.NewInvite(ctx, a.owner())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.friends.Add(ctx, b.owner(), inv.Code); err != nil {
		t.Fatal(err)
	}
}

// sharedWith finds the grain a friend shared with b's user who.
func sharedWith(t testing.TB, b *testNode, who erg.User, title string) erg.Grain {
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
	t.Fatalf("no grain %q shared with %s on %s: %+v", title, who.Username, b.friends.Name(), gs)
	return erg.Grain{}
}

// openOn signs b's test client in to a grain's origin on b and returns
// the origin.
func openOn(t testing.TB, b *testNode, who erg.User, id string) string {
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
	t.Parallel()
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	befriend(t, a, b)
	fs, err := a.friends.Friends(ctx, a.owner())
	if err != nil || len(fs) != 1 || fs[0].Name != "bnode" || !fs[0].Online {
		t.Fatalf("a's friends: %+v %v", fs, err)
	}
	g, err := a.grains.NewGrain(ctx, a.owner(), "notes", "Plans")
	if err != nil {
		t.Fatal(err)
	}
	sh, err := a.shares.New(ctx, a.owner(), g.ID, erg.ShareRequest{Role: "editor", Friend: "bnode"})
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
	// The connection between the nodes drops: the next request reconnects
	// and restores the share by itself.
	b.p2p.host.Libp2p().Network().ClosePeer(a.p2p.host.ID())
	if code, body := b.get(origin + "/api/note"); code != 200 || !strings.Contains(body, "hello") {
		t.Errorf("the first request after the connection dropped: %d %s", code, body)
	}

	start := time.Now()
	if err := a.shares.Revoke(ctx, a.owner(), sh.ID); err != nil {
		t.Fatal(err)
	}
	code, body = b.get(origin + "/api/note")
	if code != http.StatusForbidden || !strings.Contains(body, "revoked") {
		t.Errorf("after revoke: %d %s", code, body)
	}
	t.Log("revoked in", time.Since(start))

	// A share for one user of b: only they have it, and it goes with them.
	carl := b.join(t, "carl")
	if _, err := a.shares.New(ctx, a.owner(), g.ID, erg.ShareRequest{Role: "viewer", Friend: "bnode", FriendUser: "carl"}); err != nil {
		t.Fatal(err)
	}
	rg = sharedWith(t, b, carl.user(), "Plans")
	if _, err := b.OpenGrain(ctx, b.owner(), rg.ID); err == nil {
		t.Error("b's owner opened a grain shared with carl")
	}
	og, err := b.OpenGrain(ctx, carl.user(), rg.ID)
	if err != nil {
		t.Fatal(err)
	}
	carl.get(og.URL)
	origin, _, _ = strings.Cut(og.URL, "/_erg/")
	if code, body := carl.get(origin + "/api/note"); code != 200 || !strings.Contains(body, "hello") {
		t.Fatalf("carl reads: %d %s", code, body)
	}
	if err := b.RemoveUser(ctx, b.owner(), "carl"); err != nil {
		t.Fatal(err)
	}
	if code, _ := carl.get(origin + "/api/note"); code == 200 {
		t.Error("a removed user still reads the friend's grain")
	}

	// An app that checks a websocket's Origin against Host, as echo does
	// (coder/websocket's default), works through b: it is told b's host.
	e, err := a.grains.NewGrain(ctx, a.owner(), "echo", "Echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.shares.New(ctx, a.owner(), e.ID, erg.ShareRequest{Role: "editor", Friend: "bnode"}); err != nil {
		t.Fatal(err)
	}
	eo := openOn(t, b, b.owner(), sharedWith(t, b, b.owner(), "Echo").ID)
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(eo, "http")+"/ws",
		&websocket.DialOptions{HTTPClient: b.http, HTTPHeader: http.Header{"Origin": {eo}}})
	if err != nil {
		t.Fatalf("websocket with b's origin: %v", err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte("ping"))
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Errorf("echo through b: %q %v", msg, err)
	}
}

var friendCodeRe = regexp.MustCompile(`value="(erg-friend:[^"]+)"`)

func TestFriendsPageAndShareDialog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode" })
	wa, wb := a.setUp(t), b.setUp(t)

	code, body := wa.post("/friends/invite", nil)
	m := friendCodeRe.FindStringSubmatch(body)
	if code != http.StatusCreated || m == nil {
		t.Fatalf("invite: %d %s", code, body)
	}
	invite := html.UnescapeString(m[1])
	if code, body := wb.post("/friends/add", url.Values{"code": {invite}}); code != 200 || !strings.Contains(body, "now friends with anode") {
		t.Fatalf("add: %d %s", code, body)
	}
	if code, body := wb.post("/friends/add", url.Values{"code": {invite}}); code != http.StatusBadRequest || !strings.Contains(body, "already friends") {
		t.Errorf("adding again: %d %s", code, body)
	}
	if code, body := wb.post("/friends/add", url.Values{"code": {"erg-friend:garbage"}}); code != http.StatusBadRequest || !strings.Contains(body, "damaged") {
		t.Errorf("a damaged code: %d %s", code, body)
	}
	if _, body := wa.get("/friends"); !strings.Contains(body, `data-friend="bnode"`) || !strings.Contains(body, "online") {
		t.Errorf("friends page on a:\n%s", body)
	}
	eve := b.join(t, "eve")
	if _, body := eve.get("/friends"); strings.Contains(body, "friend-invite") || !strings.Contains(body, "anode") {
		t.Errorf("a user who is not the owner sees the invite button, or no friends:\n%s", body)
	}
	if code, _ := eve.post("/friends/invite", nil); code != http.StatusForbidden {
		t.Errorf("eve made a friend invite: %d", code)
	}

	g, err := a.grains.NewGrain(ctx, a.owner(), "notes", "Plans")
	if err != nil {
		t.Fatal(err)
	}
	if _, body := wa.get("/grains/" + g.ID); !strings.Contains(body, `data-testid="share-friend"`) {
		t.Error("the share dialog offers no friend")
	}
	code, body = wa.post("/grains/"+g.ID+"/shares", url.Values{"friend": {"bnode"}, "friend_user": {"nobody"}, "role": {"editor"}, "expires": {"0"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "no user") {
		t.Errorf("share to a missing user: %d", code)
	}
	code, body = wa.post("/grains/"+g.ID+"/shares", url.Values{"friend": {"bnode"}, "role": {"editor"}, "expires": {"0"}})
	if code != 200 || !strings.Contains(body, "share-delivered") {
		t.Fatalf("share with friend: %d %s", code, body)
	}
	_, body = wb.get("/grains")
	if !strings.Contains(body, "from alice@anode (on anode)") {
		t.Fatalf("b's grains page:\n%s", body)
	}
	rg := sharedWith(t, b, b.owner(), "Plans")
	if code, body := wb.get("/grains/" + rg.ID); code != 200 || !strings.Contains(body, "grain-frame") {
		t.Errorf("b opens the shared grain: %d %s", code, body)
	}
	if code, _ := eve.get("/grains/" + rg.ID); code != http.StatusNotFound {
		t.Errorf("eve opened bob's shared grain: %d", code)
	}
	shares, _ := a.shares.List(ctx, a.owner(), g.ID)
	if len(shares) != 1 || shares[0].Friend != "bnode" {
		t.Fatalf("shares: %+v", shares)
	}
	wa.post("/shares/"+shares[0].ID+"/revoke", url.Values{"grain": {g.ID}})
	if testkit.Poll(5*time.Second, func() bool { _, body = wb.get("/grains"); return strings.Contains(body, "revoked") }) != nil {
		t.Errorf("b's grains page after revocation:\n%s", body)
	}
	if code, body := wb.get("/grains/" + rg.ID); code != http.StatusForbidden || !strings.Contains(body, "the owner revoked this share") {
		t.Errorf("b opens the revoked grain: %d %s", code, body)
	}
}

// TestRemoteConnectionLostByType: a lost connection is told by the
// errors' types, a refusal is not one whatever its text.
func TestRemoteConnectionLostByType(t *testing.T) {
	for _, err := range []error{
		errors.New("grain.capnp:Gateway.restore: rpc: send message: transport: stream transport: send: encode: connection closed"),
		erg.E(erg.Invalid, `no user "nobody" on this node`),
		fed.ErrUnknownToken,
	} {
		if connectionLost(err) {
			t.Errorf("%v taken for a lost connection", err)
		}
	}
	for _, err := range []error{
		rpc.ExcClosed,
		fmt.Errorf("send: %w", network.ErrReset),
		&network.StreamError{ErrorCode: 1, Remote: true},
		&network.ConnError{ErrorCode: 1, Remote: true},
		fmt.Errorf("receive: %w", io.EOF),
	} {
		if !connectionLost(err) {
			t.Errorf("%v not taken for a lost connection", err)
		}
	}
}

// TestFriendRefusalKeepsItsKind: what a friend's node refuses reaches the
// caller with the kind that node gave it, not as text.
func TestFriendRefusalKeepsItsKind(t *testing.T) {
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	befriend(t, a, b)
	g, err := a.grains.NewGrain(ctx, a.owner(), "notes", "Plans")
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.shares.New(ctx, a.owner(), g.ID, erg.ShareRequest{Role: "viewer", Friend: "bnode", FriendUser: "nobody"})
	if erg.KindOf(err) != erg.Invalid || !strings.Contains(err.Error(), `no user "nobody"`) {
		t.Errorf("share to a missing user: kind %v: %v", erg.KindOf(err), err)
	}
	sh, err := a.shares.New(ctx, a.owner(), g.ID, erg.ShareRequest{Role: "viewer", Friend: "bnode"})
	if err != nil {
		t.Fatal(err)
	}
	rg := b.remoteGrain(sharedWith(t, b, b.owner(), "Plans").ID)

	// A revoked share's restore is refused as NotFound.
	if err := a.shares.Revoke(ctx, a.owner(), sh.ID); err != nil {
		t.Fatal(err)
	}
	_, _, err = fed.Restore(ctx, gatewayTo(t, b, a), rg.token, "bob")
	if erg.KindOf(err) != erg.NotFound || !errors.Is(err, fed.ErrUnknownToken) {
		t.Errorf("restore of a revoked share: kind %v: %v", erg.KindOf(err), err)
	}

	// b forgets a without telling it: b's node refuses a's next share as
	// Forbidden, over the connection a still has.
	if _, err := b.db.ExecContext(ctx, `DELETE FROM friends WHERE peer = ?`, a.p2p.host.ID().String()); err != nil {
		t.Fatal(err)
	}
	_, err = a.shares.New(ctx, a.owner(), g.ID, erg.ShareRequest{Role: "viewer", Friend: "bnode"})
	if erg.KindOf(err) != erg.Forbidden || !errors.Is(err, erg.ErrForbidden) || !strings.Contains(err.Error(), "not your friend") {
		t.Errorf("share to a node that forgot us: kind %v: %v", erg.KindOf(err), err)
	}
}

// TestFriendFoundThroughTheDHT: when the addresses b stored for a fail, b
// finds a's current ones in the DHT.
//
// Not parallel: b's connectFriend must find a disconnected, and under load
// a reconnects on its own first (its friend loop), leaving b's stored
// addresses as they were.
func TestFriendFoundThroughTheDHT(t *testing.T) {
	ctx := context.Background()
	boot := startNode(t, func(c *Config) { c.Name = "boot" })
	a := startNode(t, func(c *Config) { c.Name = "anode"; c.Bootstrap = boot.P2PAddrs()[:1] })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Bootstrap = boot.P2PAddrs()[:1] })
	befriend(t, a, b)
	for _, n := range []*testNode{a, b} {
		testkit.AwaitFor(t, 10*time.Second, "a DHT routing table", func() bool { return n.p2p.host.RoutingTableSize() > 0 })
	}
	aID := a.p2p.host.ID()
	if _, err := b.db.Exec(`UPDATE friends SET addrs = '["/ip4/127.0.0.1/tcp/1"]' WHERE peer = ?`, aID.String()); err != nil {
		t.Fatal(err)
	}
	h := b.p2p.host.Libp2p()
	h.Network().ClosePeer(aID)
	h.Peerstore().ClearAddrs(aID)
	if err := b.connectFriend(ctx, aID); err != nil {
		t.Fatalf("connect through the DHT: %v", err)
	}
	f, _ := b.friendByPeer(ctx, aID.String())
	if len(f.Addrs) == 0 || slices.Contains(f.Addrs, "/ip4/127.0.0.1/tcp/1") {
		t.Errorf("b's stored addresses for a: %v", f.Addrs)
	}
}

// TestFriendNamesStayUnique: a friend whose name another friend has
// already gets a numbered one; the taken name is told by the driver's
// constraint code.
func TestFriendNamesStayUnique(t *testing.T) {
	ctx := context.Background()
	n := startNode(t, nil)
	for i, want := range []string{"pal", "pal-2", "PAL-3"} {
		f, err := n.recordFriend(ctx, peer.ID(fmt.Sprintf("peer-%d", i)), []string{"pal", "pal", "PAL"}[i], nil)
		if err != nil || f.Name != want {
			t.Errorf("friend %d: %q, %v; want %q", i, f.Name, err, want)
		}
	}
	_, err := n.db.ExecContext(ctx, `INSERT INTO friends (peer, name, addrs, added_at) VALUES ('p', 'pal', '[]', 0)`)
	if !uniqueViolated(err) {
		t.Errorf("a taken name: %v", err)
	}
	if uniqueViolated(errors.New("UNIQUE constraint failed")) {
		t.Error("text taken for the constraint")
	}
}
