package friends

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/db"
	"erg/fed"
	"erg/p2p"
	"erg/p2p/p2ptest"
)

var owner = erg.User{ID: "owner", Username: "olive", Owner: true}

// noShares is a node that shares nothing; it counts the friends it was
// told to forget.
type noShares struct {
	mu        sync.Mutex
	forgotten []string
}

func (*noShares) Restore(context.Context, string, string, []byte, string) (*fed.GrainServer, fed.ShareInfo, error) {
	return nil, fed.ShareInfo{}, fed.ErrUnknownToken
}
func (*noShares) Offer(context.Context, string, fed.Offer) error { return nil }
func (*noShares) Withdraw(context.Context, string, []byte) error { return nil }

func (ns *noShares) forgetting(_ context.Context, p string) (func(), error) {
	return func() {
		ns.mu.Lock()
		ns.forgotten = append(ns.forgotten, p)
		ns.mu.Unlock()
	}, nil
}

func (ns *noShares) count() int {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return len(ns.forgotten)
}

type testNode struct {
	*Service
	host   *p2p.Host
	shares *noShares
}

// newNodes starts a friends service for each name on a real host on
// loopback, each with its own database. The hosts are not joined: nodes
// reach each other by the addresses in invites.
func newNodes(t *testing.T, names ...string) []testNode {
	t.Helper()
	hosts := make([]*p2p.Host, len(names))
	for i := range hosts {
		hosts[i] = p2ptest.NewTestNet(t, 1, nil)[0]
	}
	return onHosts(t, hosts, names...)
}

// onHosts starts a friends service for each name on the host at its index.
func onHosts(t *testing.T, hosts []*p2p.Host, names ...string) []testNode {
	t.Helper()
	ctx := context.Background()
	out := make([]testNode, len(names))
	for i, name := range names {
		h := hosts[i]
		d, err := db.Open(ctx, filepath.Join(t.TempDir(), "erg.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		ns := &noShares{}
		s, err := New(ctx, Config{Host: h, DB: d, Name: name, Shares: ns, Forgetting: ns.forgetting})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		out[i] = testNode{Service: s, host: h, shares: ns}
	}
	return out
}

func names(t *testing.T, s *Service) []string {
	t.Helper()
	fs, err := s.Friends(context.Background(), owner)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func TestInviteMakesFriendsOnBothSides(t *testing.T) {
	ctx := context.Background()
	ns := newNodes(t, "anode", "bnode")
	a, b := ns[0], ns[1]
	inv, err := a.NewInvite(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(inv.Expires); d < InviteTTL-time.Minute || d > InviteTTL {
		t.Errorf("invite expires in %v", d)
	}
	f, err := b.Add(ctx, owner, inv.Code)
	if err != nil {
		t.Fatal(err)
	}
	if f.Name != "anode" || f.Peer != a.host.ID().String() || !f.Online {
		t.Errorf("b added %+v", f)
	}
	if got := names(t, b.Service); len(got) != 1 || got[0] != "anode" {
		t.Errorf("b's friends: %v", got)
	}
	if got := names(t, a.Service); len(got) != 1 || got[0] != "bnode" {
		t.Errorf("a's friends: %v", got)
	}
	if !a.IsFriend(b.host.ID()) || !b.IsFriend(a.host.ID()) {
		t.Error("not friends both ways")
	}
	if _, err := b.Add(ctx, owner, inv.Code); !errors.Is(err, erg.ErrInvalid) || !strings.Contains(err.Error(), "already friends") {
		t.Errorf("adding a friend again: %v", err)
	}
}

func TestOnlyTheOwnerInvites(t *testing.T) {
	ctx := context.Background()
	a := newNodes(t, "anode")[0]
	user := erg.User{ID: "u", Username: "ursula"}
	if _, err := a.NewInvite(ctx, user); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a user's invite: %v", err)
	}
	if _, err := a.Add(ctx, user, "erg-friend:x"); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a user adds a friend: %v", err)
	}
	if err := a.Remove(ctx, user, "x"); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a user removes a friend: %v", err)
	}
}

func TestInviteWorksOnceAndExpires(t *testing.T) {
	ctx := context.Background()
	ns := newNodes(t, "anode", "bnode", "cnode")
	a, b, c := ns[0], ns[1], ns[2]
	inv, err := a.NewInvite(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(ctx, owner, inv.Code); err != nil {
		t.Fatal(err)
	}
	_, err = c.Add(ctx, owner, inv.Code)
	if !errors.Is(err, erg.ErrForbidden) || !strings.Contains(err.Error(), "unknown, used or expired") {
		t.Errorf("an invite used twice: %v", err)
	}
	inv, err = a.NewInvite(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.db.Exec(`UPDATE friend_invites SET expires_at = ?`, time.Now().Add(-time.Second).Unix()); err != nil {
		t.Fatal(err)
	}
	_, err = c.Add(ctx, owner, inv.Code)
	if !errors.Is(err, erg.ErrForbidden) || !strings.Contains(err.Error(), "unknown, used or expired") {
		t.Errorf("an expired invite: %v", err)
	}
	if got := names(t, c.Service); len(got) != 0 {
		t.Errorf("c's friends: %v", got)
	}
	if got := names(t, a.Service); len(got) != 1 {
		t.Errorf("a's friends: %v", got)
	}
}

func befriend(t *testing.T, a, b testNode) {
	t.Helper()
	ctx := context.Background()
	inv, err := a.NewInvite(ctx, owner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Add(ctx, owner, inv.Code); err != nil {
		t.Fatal(err)
	}
}

func TestRemovingAFriendMakesItForget(t *testing.T) {
	ctx := context.Background()
	ns := newNodes(t, "anode", "bnode")
	a, b := ns[0], ns[1]
	befriend(t, a, b)
	if err := b.Remove(ctx, owner, "anode"); err != nil {
		t.Fatal(err)
	}
	if got := names(t, b.Service); len(got) != 0 {
		t.Errorf("b's friends: %v", got)
	}
	if got := names(t, a.Service); len(got) != 0 {
		t.Errorf("a's friends after b removed it: %v", got)
	}
	if a.shares.count() != 1 || b.shares.count() != 1 {
		t.Errorf("forgotten: a %v, b %v", a.shares.forgotten, b.shares.forgotten)
	}
	if err := b.Remove(ctx, owner, "anode"); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("removing a friend twice: %v", err)
	}
	if err := a.Unfriend(ctx, b.host.ID().String()); err != nil {
		t.Errorf("unfriend from a stranger: %v", err)
	}
	if _, err := a.Gateway(ctx, b.host.ID()); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("a connection to a former friend: %v", err)
	}
}

func TestStrangersAreRefused(t *testing.T) {
	ctx := context.Background()
	ns := newNodes(t, "anode", "bnode")
	a, b := ns[0], ns[1]
	if _, err := a.NewInvite(ctx, owner); err != nil {
		t.Fatal(err)
	}
	if err := b.host.Libp2p().Connect(ctx, peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Libp2p().Addrs()}); err != nil {
		t.Fatal(err)
	}
	// A friend request with a made-up secret.
	st, err := b.host.NewStream(ctx, a.host.ID(), fed.FriendProtocol, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := fed.WriteFrame(st, fed.FriendRequest{Secret: make([]byte, 32), Name: "mallory"}); err != nil {
		t.Fatal(err)
	}
	var rep fed.FriendReply
	if err := fed.ReadFrame(st.R, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Name != "" || !strings.Contains(rep.Error, "unknown, used or expired") {
		t.Errorf("a stranger's request: %+v", rep)
	}
	if a.IsFriend(b.host.ID()) {
		t.Error("a befriended a stranger")
	}
	// Cap'n Proto from a stranger is reset before anything is read.
	cs, err := b.host.Libp2p().NewStream(ctx, a.host.ID(), fed.CapnpProtocol)
	if err != nil {
		t.Fatal(err)
	}
	cs.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := bufio.NewReader(cs).ReadByte(); err == nil {
		t.Error("a stranger's capnp stream was answered")
	}
	// Calls to a stranger are refused without dialing.
	if err := b.Call(ctx, a.host.ID(), func(fed.Gateway) error { return nil }); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("a call to a stranger: %v", err)
	}
}

func TestFriendsTalkOverCapnp(t *testing.T) {
	ctx := context.Background()
	ns := newNodes(t, "anode", "bnode")
	a, b := ns[0], ns[1]
	befriend(t, a, b)
	c, err := b.Gateway(ctx, a.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	if again, err := b.Gateway(ctx, a.host.ID()); err != nil || again != c {
		t.Errorf("a second Gateway: %p, %v; want the first, %p", again, err, c)
	}
	err = b.Call(ctx, a.host.ID(), func(gw fed.Gateway) error {
		_, _, err := fed.Restore(ctx, gw, make([]byte, 32), "bob")
		return err
	})
	if !errors.Is(err, fed.ErrUnknownToken) {
		t.Errorf("restore of an unknown token: %v", err)
	}
	b.Drop(a.host.ID(), c)
	select {
	case <-c.RPC().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a dropped connection stays open")
	}
	if c2, err := b.Gateway(ctx, a.host.ID()); err != nil || c2 == c {
		t.Errorf("Gateway after Drop: %v (the same: %v)", err, c2 == c)
	}
}

// TestFriendFoundThroughTheDHT: when the addresses b stored for a fail, b
// finds a's current ones in the DHT, and stores them.
func TestFriendFoundThroughTheDHT(t *testing.T) {
	ctx := context.Background()
	hosts := p2ptest.NewTestNet(t, 3, nil) // a line: a, boot, b
	ns := onHosts(t, []*p2p.Host{hosts[0], hosts[2]}, "anode", "bnode")
	a, b := ns[0], ns[1]
	befriend(t, a, b)
	aID := a.host.ID()
	if _, err := b.db.Exec(`UPDATE friends SET addrs = '["/ip4/127.0.0.1/tcp/1"]' WHERE peer = ?`, aID.String()); err != nil {
		t.Fatal(err)
	}
	h := b.host.Libp2p()
	h.Network().ClosePeer(aID)
	h.Peerstore().ClearAddrs(aID)
	if err := b.Connect(ctx, aID); err != nil {
		t.Fatalf("connect through the DHT: %v", err)
	}
	f, _ := b.ByPeer(ctx, aID.String())
	if len(f.Addrs) == 0 || slices.Contains(f.Addrs, "/ip4/127.0.0.1/tcp/1") {
		t.Errorf("b's stored addresses for a: %v", f.Addrs)
	}
}

func TestFriendNamesStayUnique(t *testing.T) {
	ctx := context.Background()
	a := newNodes(t, "anode")[0]
	for i, want := range []string{"pal", "pal-2", "PAL-3"} {
		f, err := a.Record(ctx, peer.ID(fmt.Sprintf("peer-%d", i)), []string{"pal", "pal", "PAL"}[i], nil)
		if err != nil || f.Name != want {
			t.Errorf("friend %d: %q, %v; want %q", i, f.Name, err, want)
		}
	}
	long := strings.Repeat("x", 64)
	a.Record(ctx, "peer-long", long, nil)
	f, err := a.Record(ctx, "peer-long-2", long, nil)
	if err != nil || f.Name != long[:62]+"-2" {
		t.Errorf("a long taken name: %q, %v", f.Name, err)
	}
	if got := a.Names(ctx); got[peer.ID("peer-1").String()] != "pal-2" || len(got) != 5 {
		t.Errorf("names: %v", got)
	}
}

func TestNodeNameFallsBack(t *testing.T) {
	if _, err := nodeName(context.Background(), Config{Name: "a@b"}); err == nil {
		t.Error("a name with '@' taken")
	}
	name, err := nodeName(context.Background(), Config{})
	if err != nil || fed.CheckNodeName(name) != nil {
		t.Errorf("default name %q, %v", name, err)
	}
}
