package fedgrains

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/accounts"
	"erg/db"
	"erg/fed"
	"erg/friends"
	"erg/grains"
	"erg/grains/grainstest"
	"erg/internal/testkit"
	"erg/p2p"
	"erg/p2p/p2ptest"
	"erg/sandbox"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	testkit.Cleanup()
	os.Exit(code)
}

var owner = erg.User{ID: accounts.OwnerID, Username: "olga", Owner: true}

// testNode is what a node needs of its own to share grains with friends:
// a real host on loopback, a real database, accounts, grains and friends.
type testNode struct {
	*Service
	host    *p2p.Host
	env     *grainstest.Env
	grains  *grains.Service
	friends *friends.Service
}

func newNode(t *testing.T, name string) *testNode {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	d, err := db.Open(ctx, filepath.Join(dir, "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	acc, err := accounts.New(ctx, accounts.Config{DB: d, Owner: owner.Username})
	if err != nil {
		t.Fatal(err)
	}
	env := grainstest.New(t, d, dir, map[string]string{owner.ID: owner.Username})
	gs := env.Grains
	s, err := New(ctx, Config{DB: d, Grains: gs, Accounts: acc, Derive: grainstest.Derive, Origin: grainstest.Origin})
	if err != nil {
		t.Fatal(err)
	}
	h := p2ptest.NewTestNet(t, 1, nil)[0]
	fs, err := friends.New(ctx, friends.Config{Host: h, DB: d, Name: name, Shares: s, Forgetting: s.Forgetting})
	if err != nil {
		t.Fatal(err)
	}
	s.Serve(fs)
	t.Cleanup(func() { fs.Close(); s.Close() })
	return &testNode{Service: s, host: h, env: env, grains: gs, friends: fs}
}

// befriend makes a and b friends through an invite.
func befriend(t *testing.T, a, b *testNode) {
	t.Helper()
	ctx := context.Background()
	inv, err := a.friends.NewInvite(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.friends.Add(ctx, owner, inv.Code); err != nil {
		t.Fatal(err)
	}
}

// offer has a deliver a share to b, as a's ShareWithFriend does, and
// returns its token.
func offer(t *testing.T, a, b *testNode, title string) []byte {
	t.Helper()
	ctx := context.Background()
	token := make([]byte, 32)
	rand.Read(token)
	o := fed.Offer{Token: token, Owner: "olga", Info: fed.ShareInfo{Title: title, AppName: "Echo", Role: "viewer", Permissions: []string{"read"}}}
	if err := a.friends.Call(ctx, b.host.ID(), func(gw fed.Gateway) error { return fed.SendOffer(ctx, gw, o) }); err != nil {
		t.Fatal(err)
	}
	return token
}

func TestOfferListsAndWithdrawRevokes(t *testing.T) {
	ctx := context.Background()
	a, b := newNode(t, "anode"), newNode(t, "bnode")
	befriend(t, a, b)
	token := offer(t, a, b, "Plans")

	gs := b.List(ctx, owner)
	if len(gs) != 1 || gs[0].Title != "Plans" || gs[0].From != "anode" || gs[0].Owner != "olga@anode" || gs[0].Role != "viewer" || gs[0].Revoked {
		t.Fatalf("b lists %+v", gs)
	}
	if got := a.List(ctx, owner); len(got) != 0 {
		t.Errorf("a lists %+v", got)
	}
	h, err := b.Handle(gs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Describe(ctx, erg.User{ID: "someone"}); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("another user's describe: %v", err)
	}
	g, err := h.Open(ctx, owner)
	if err != nil || !strings.HasPrefix(g.URL, "http://g-"+g.ID+".test/_erg/login?token=") {
		t.Errorf("open: %+v, %v", g, err)
	}
	if _, err := b.Handle("nope"); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("an unknown id: %v", err)
	}

	// The same offer again updates the grain, not a second one.
	offer2 := fed.Offer{Token: token, Owner: "olga", Info: fed.ShareInfo{Title: "Plans 2", AppName: "Echo", Role: "editor"}}
	if err := a.friends.Call(ctx, b.host.ID(), func(gw fed.Gateway) error { return fed.SendOffer(ctx, gw, offer2) }); err != nil {
		t.Fatal(err)
	}
	if gs := b.List(ctx, owner); len(gs) != 1 || gs[0].ID != g.ID {
		t.Errorf("b lists after the offer again: %+v", gs)
	}

	sum := sha256.Sum256(token)
	if err := a.friends.Call(ctx, b.host.ID(), func(gw fed.Gateway) error { return fed.SendWithdraw(ctx, gw, sum[:]) }); err != nil {
		t.Fatal(err)
	}
	if gs := b.List(ctx, owner); len(gs) != 1 || !gs[0].Revoked {
		t.Errorf("b lists after the withdrawal: %+v", gs)
	}
	// A handle is resolved for each request: the offer again replaced the
	// one above.
	if h, err = b.Handle(g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Open(ctx, owner); erg.KindOf(err) != erg.Forbidden || !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("open of a revoked share: %v", err)
	}
}

func TestOfferRefused(t *testing.T) {
	ctx := context.Background()
	b := newNode(t, "bnode")
	stranger := peer.ID("stranger").String()
	err := b.Offer(ctx, stranger, fed.Offer{Token: []byte("t"), Owner: "olga"})
	if erg.KindOf(err) != erg.Forbidden {
		t.Errorf("an offer from a stranger: %v", err)
	}
	a := newNode(t, "anode")
	befriend(t, a, b)
	for name, o := range map[string]fed.Offer{
		"no such user":        {Token: []byte("t"), Owner: "olga", User: "nobody"},
		"a bad owner":         {Token: []byte("t"), Owner: "Not A Name!"},
		"a comma'd role":      {Token: []byte("t"), Owner: "olga", Info: fed.ShareInfo{Role: "a,b"}},
		"a comma'd offer":     {Token: []byte("t"), Owner: "olga", Info: fed.ShareInfo{Role: "viewer", Offers: []string{"a,b"}}},
		"a climbing apiPath":  {Token: []byte("t"), Owner: "olga", Info: fed.ShareInfo{Role: "viewer", APIPath: "/api/../../"}},
		"a query for apiPath": {Token: []byte("t"), Owner: "olga", Info: fed.ShareInfo{Role: "viewer", APIPath: "/?x=/"}},
	} {
		if err := b.Offer(ctx, a.host.ID().String(), o); erg.KindOf(err) != erg.Invalid {
			t.Errorf("%s: %v", name, err)
		}
	}
	if gs := b.List(ctx, owner); len(gs) != 0 {
		t.Errorf("b lists %+v", gs)
	}
}

func TestRestoreUnknownToken(t *testing.T) {
	ctx := context.Background()
	a, b := newNode(t, "anode"), newNode(t, "bnode")
	befriend(t, a, b)
	c, err := b.friends.Gateway(ctx, a.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = fed.Restore(ctx, c.Gateway(), []byte("no such token"), "olga")
	if !errors.Is(err, fed.ErrUnknownToken) || erg.KindOf(err) != erg.NotFound {
		t.Errorf("restore of an unknown token: %v", err)
	}
}

func TestForgettingAFriendForgetsItsGrains(t *testing.T) {
	ctx := context.Background()
	a, b := newNode(t, "anode"), newNode(t, "bnode")
	befriend(t, a, b)
	offer(t, a, b, "Plans")
	if gs := b.List(ctx, owner); len(gs) != 1 {
		t.Fatalf("b lists %+v", gs)
	}
	if err := b.friends.Remove(ctx, owner, "anode"); err != nil {
		t.Fatal(err)
	}
	if gs := b.List(ctx, owner); len(gs) != 0 {
		t.Errorf("b lists after forgetting a: %+v", gs)
	}
}

// installEcho installs the echo test app on n.
func installEcho(t *testing.T, n *testNode) { n.env.InstallEcho(t) }

func get(t *testing.T, rt http.RoundTripper, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://grain"+path, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A grain a shares with b is served to b's user through a's node, until
// a revokes the share.
func TestSharedGrainServedAndRevoked(t *testing.T) {
	ctx := context.Background()
	a, b := newNode(t, "anode"), newNode(t, "bnode")
	installEcho(t, a)
	befriend(t, a, b)
	g, err := a.grains.NewGrain(ctx, owner, "echo", "Echoes")
	if err != nil {
		t.Fatal(err)
	}
	info, err := a.grains.Lookup(g.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.ShareWithFriend(ctx, owner, info, erg.ShareRequest{Role: "editor", Friend: "nobody"}); erg.KindOf(err) != erg.Invalid {
		t.Errorf("a share for no friend: %v", err)
	}
	sh, err := a.ShareWithFriend(ctx, owner, info, erg.ShareRequest{Role: "editor", Friend: "bnode"})
	if err != nil {
		t.Fatal(err)
	}
	if sh.Friend != "bnode" || sh.GrainID != g.ID {
		t.Errorf("share %+v", sh)
	}
	gs := b.List(ctx, owner)
	if len(gs) != 1 || gs[0].Title != "Echoes" || gs[0].AppName != "Echo" || gs[0].Role != "editor" {
		t.Fatalf("b lists %+v", gs)
	}
	h, err := b.Handle(gs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	rt, release, err := h.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if code, body := get(t, rt, "/write?v=shared"); code != http.StatusOK {
		t.Errorf("write through b: %d %q", code, body)
	}
	if code, body := get(t, rt, "/read"); code != http.StatusOK || body != "shared" {
		t.Errorf("read through b: %d %q", code, body)
	}

	// a revokes the share, as package shares does: the row goes, then a
	// ends the capability and tells b.
	var hash string
	if err := a.env.DB.QueryRow(`SELECT hash FROM shares WHERE id = ?`, sh.ID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if _, err := a.env.DB.Exec(`DELETE FROM shares WHERE id = ?`, sh.ID); err != nil {
		t.Fatal(err)
	}
	a.RevokeFriendShare(sh.ID, b.host.ID().String(), hash)
	if code, body := get(t, rt, "/read"); code != http.StatusForbidden || body != errShareRevoked.Error()+"\n" {
		t.Errorf("read after the revocation: %d %q", code, body)
	}
	testkit.AwaitFor(t, 10*time.Second, "b to know of the revocation", func() bool {
		gs := b.List(ctx, owner)
		return len(gs) == 1 && gs[0].Revoked
	})
}

// TestLaterInfoChecked: what the owner's node says of a grain on a
// restore is held to the rules of its offer, and a refused answer
// changes nothing, in memory or on disk.
func TestLaterInfoChecked(t *testing.T) {
	ctx := context.Background()
	a, b := newNode(t, "anode"), newNode(t, "bnode")
	befriend(t, a, b)
	offer(t, a, b, "Plans")
	gs := b.List(ctx, owner)
	if len(gs) != 1 {
		t.Fatalf("b lists %+v", gs)
	}
	b.mu.Lock()
	g := b.remote[gs[0].ID]
	b.mu.Unlock()
	stored := func() (role, perms, apiPath string) {
		t.Helper()
		if err := b.db.QueryRow(`SELECT role, permissions, api_path FROM remote_grains WHERE id = ?`, g.id).Scan(&role, &perms, &apiPath); err != nil {
			t.Fatal(err)
		}
		return role, perms, apiPath
	}
	for name, info := range map[string]fed.ShareInfo{
		"a comma'd role":       {Role: "a,b", Permissions: []string{"read", "write"}},
		"a comma'd permission": {Role: "editor", Permissions: []string{"read,write"}},
		"a climbing apiPath":   {Role: "editor", Permissions: []string{"read"}, APIPath: "/api/../../"},
	} {
		if err := b.learn(g, info); erg.KindOf(err) != erg.Invalid {
			t.Errorf("%s: %v", name, err)
		}
		if gs := b.List(ctx, owner); len(gs) != 1 || gs[0].Role != "viewer" || gs[0].Title != "Plans" {
			t.Errorf("%s: b lists %+v", name, gs)
		}
		if role, perms, apiPath := stored(); role != "viewer" || perms != "read" || apiPath != "" {
			t.Errorf("%s: stored %q %q %q", name, role, perms, apiPath)
		}
	}
	if err := b.learn(g, fed.ShareInfo{Role: "editor", Permissions: []string{"read", "write"}, APIPath: "/api/"}); err != nil {
		t.Fatal(err)
	}
	if role, perms, apiPath := stored(); role != "editor" || perms != "read,write" || apiPath != "/api/" {
		t.Errorf("after a good answer, stored %q %q %q", role, perms, apiPath)
	}
}
