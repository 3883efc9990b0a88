package lab

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/internal/testkit"
	"erg/nodetest"
	"erg/p2p"
)

// world is the lab's internet with an erg node in each place: R and a
// stranger on the public bridge, A, B and C in the homes.
type world struct {
	*Internet
	env              *nodetest.Env
	r, s, a, b, c, d *nodetest.Node
}

// publicAddr is a node's libp2p TCP address on ip.
func publicAddr(t *testing.T, n *nodetest.Node, ip string) string {
	t.Helper()
	for _, a := range n.Status().P2PAddrs {
		if strings.HasPrefix(a, "/ip4/"+ip+"/tcp/") {
			return a
		}
	}
	t.Fatalf("%s has no address on %s: %v", n.Name, ip, n.Status().P2PAddrs)
	return ""
}

func newWorld(t *testing.T) *world {
	in := NewInternet(t)
	env := nodetest.New(t)
	w := &world{Internet: in, env: env}
	// Plain `erg run` everywhere: every interface, the node's own port.
	w.r = env.Process("rnode", nodetest.Netns(in.R.Full, in.R.DialContext), nodetest.Owner("rita"))
	boot := nodetest.Bootstrap(publicAddr(t, w.r, RAddr))
	w.s = env.Process("snode", nodetest.Netns(in.Stranger.Full, in.Stranger.DialContext), nodetest.Owner("sam"), boot)
	w.a = env.Process("anode", nodetest.Netns(in.A.Host.Full, in.A.Host.DialContext), nodetest.Owner("alice"), boot)
	w.b = env.Process("bnode", nodetest.Netns(in.B.Host.Full, in.B.Host.DialContext), nodetest.Owner("bob"), boot)
	w.c = env.Process("cnode", nodetest.Netns(in.C.Host.Full, in.C.Host.DialContext), nodetest.Owner("carol"), boot)
	w.d = env.Process("dnode", nodetest.Netns(in.D.Host.Full, in.D.Host.DialContext), nodetest.Owner("dora"), boot)
	return w
}

// friend is n's friend called name as n lists it.
func friend(n *nodetest.Node, name string) (erg.Friend, bool) {
	fs, err := n.Client().Friends(context.Background())
	if err != nil {
		return erg.Friend{}, false
	}
	for _, f := range fs {
		if f.Name == name {
			return f, true
		}
	}
	return erg.Friend{}, false
}

// awaitReach waits until n reports reachability kind.
func awaitReach(t *testing.T, n *nodetest.Node, kind string) erg.Status {
	t.Helper()
	var s erg.Status
	if err := testkit.Poll(90*time.Second, func() bool {
		s = n.Status()
		return s.Reachability == kind
	}); err != nil {
		t.Fatalf("%s to be %s: %v; it is %s (%s) %v, addresses %v", n.Name, kind, err, s.Reachability, s.ReachabilityText, s.ReachableAddrs, s.P2PAddrs)
	}
	t.Logf("%s: %s %v", n.Name, s.ReachabilityText, s.ReachableAddrs)
	return s
}

// awaitPath waits until n's friend is connected by path.
func awaitPath(t *testing.T, n *nodetest.Node, name, path string) {
	t.Helper()
	nodetest.AwaitFor(t, 90*time.Second, n.Name+" to reach "+name+" "+path, func() bool {
		f, _ := friend(n, name)
		return f.Online && f.Path == path
	})
}

// awaitOnline waits until n lists every friend online.
func awaitOnline(t *testing.T, d time.Duration, n *nodetest.Node, names ...string) {
	t.Helper()
	for _, name := range names {
		nodetest.AwaitFor(t, d, n.Name+" to see "+name+" online", func() bool {
			f, _ := friend(n, name)
			return f.Online
		})
	}
}

func TestFriendsAcrossTheInternet(t *testing.T) {
	skipUnlessLab(t)
	w := newWorld(t)
	ctx := context.Background()

	// 1. R befriends A, B, C and D: each pastes R's invite code.
	for _, n := range []*nodetest.Node{w.a, w.b, w.c, w.d} {
		w.env.Befriend(w.r, n)
	}
	awaitReach(t, w.r, p2p.Reachable)
	// 2. C's router maps its port, and the internet dials C directly.
	cs := awaitReach(t, w.c, p2p.Mapped)
	if !strings.Contains(cs.ReachableAddrs[0], "/ip4/"+w.C.WAN+"/") {
		t.Errorf("C reachable at %v, want its router's address %s", cs.ReachableAddrs, w.C.WAN)
	}
	if out := w.c.CLI("status"); !strings.Contains(out, "behind NAT, mapped by the router") {
		t.Errorf("erg status on C:\n%s", out)
	}
	// A, B and D are reached through R, their friend.
	for _, n := range []*nodetest.Node{w.a, w.b, w.d} {
		s := awaitReach(t, n, p2p.Relayed)
		if !strings.Contains(s.ReachableAddrs[0], "/ip4/"+RAddr+"/") {
			t.Errorf("%s relayed at %v, want through R (%s)", n.Name, s.ReachableAddrs, RAddr)
		}
	}
	// The homes befriend each other through codes carrying relayed
	// addresses, which is how they first reach each other.
	w.env.Befriend(w.a, w.b)
	w.env.Befriend(w.a, w.c)
	w.env.Befriend(w.a, w.d)
	w.env.Befriend(w.c, w.b)

	// 3. A and D (easy NATs, no mapping) punch through; A and C are
	// direct (C's mapping); A and B (hard NAT) stay relayed through R.
	// The friend rows say so, and the routers' NAT tables agree.
	awaitPath(t, w.a, "cnode", "direct")
	awaitPath(t, w.a, "bnode", "relayed")
	// A and D punch a hole in most runs here, not all (libp2p tries a
	// few times when the relayed connection opens, then keeps the relay):
	// whichever it is, the row must say where the packets go.
	awaitOnline(t, 30*time.Second, w.a, "dnode")
	testkit.Poll(30*time.Second, func() bool {
		f, _ := friend(w.a, "dnode")
		return f.Path == "direct"
	})
	fd, _ := friend(w.a, "dnode")
	t.Logf("A-D: %s", fd.Path)
	if direct := w.A.Direct(w.D) && w.D.Direct(w.A); direct != (fd.Path == "direct") {
		t.Errorf("A's row says D is %s, but the routers' flows between them say direct=%v:\n%s\n%s", fd.Path, direct, w.A.Conntrack("udp"), w.D.Conntrack("udp"))
	}
	if !w.A.Direct(w.C) && !w.C.Direct(w.A) {
		t.Errorf("A-C is direct by its friend rows, but the routers have no flow between them:\n%s%s\n%s%s",
			w.A.Conntrack("tcp"), w.A.Conntrack("udp"), w.C.Conntrack("tcp"), w.C.Conntrack("udp"))
	}
	if w.A.Direct(w.B) || w.B.Direct(w.A) {
		t.Errorf("A-B is relayed by its friend rows, but the routers have a flow between them")
	}
	var fs []erg.Friend
	if err := json.Unmarshal([]byte(w.a.CLI("friend", "ls", "--json")), &fs); err != nil {
		t.Fatal(err)
	}
	paths := map[string]string{}
	for _, f := range fs {
		paths[f.Name] = f.Path
	}
	if paths["bnode"] != "relayed" || paths["dnode"] != "direct" {
		t.Errorf("erg friend ls --json on A: %v", paths)
	}

	// 4. A shares a note with B and C, who edit it in their browsers.
	notesAcrossTheLab(t, w)

	// 7. C publishes an app; A finds it in the store and installs it.
	storeAcrossTheLab(t, w)

	// 5. The routers lose their NAT tables and miniupnpd restarts: the
	// friends find each other again within 60 s, and C gets its mapping back.
	healStart := time.Now()
	w.RestartRouters()
	// A new friendship across the healed paths: B dials D through R.
	inv, err := w.d.Client().NewFriendInvite(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var addErr error
	nodetest.AwaitFor(t, 60*time.Second, "B to befriend D after the routers restarted", func() bool {
		_, addErr = w.b.Client().AddFriend(ctx, inv.Code)
		return addErr == nil || strings.Contains(addErr.Error(), "already friends")
	})
	awaitOnline(t, 60*time.Second-time.Since(healStart), w.a, "bnode", "cnode", "dnode", "rnode")
	awaitOnline(t, 60*time.Second-time.Since(healStart), w.b, "anode", "cnode", "rnode")
	t.Logf("friends online again %v after the routers restarted", time.Since(healStart).Round(time.Millisecond))
	if time.Since(healStart) > 60*time.Second {
		t.Errorf("healing took %v, more than a minute", time.Since(healStart))
	}
	// C's router forgot its mapping, and its UPnP service came back on
	// a new control port: go-libp2p's renewals fail, so the mapping
	// leaves C's addresses, and C stops saying "mapped by the router";
	// it says so again within the minute, once go-libp2p found the router
	// again and mapped a new port, and a friend got in there (p2p's
	// dial-back; AutoNAT v2 alone took more than 90 s here). The stranger
	// then connects at that address from the internet side, here and in
	// 6. (TestMappedOnlyWhileAFriendGetsIn has the mapping come back at
	// the same port.)
	var cs2 erg.Status
	var gone time.Duration // when C stopped saying mapped
	if err := testkit.Poll(60*time.Second-time.Since(healStart), func() bool {
		cs2 = w.c.Status()
		if gone == 0 {
			if cs2.Reachability != p2p.Mapped {
				gone = time.Since(healStart)
			}
			return false
		}
		return cs2.Reachability == p2p.Mapped && strings.Contains(cs2.ReachableAddrs[0], "/ip4/"+w.C.WAN+"/")
	}); err != nil {
		t.Errorf("C %v after the routers restarted: %s %v, addresses %v (stopped saying mapped after %v); want it to stop, then be mapped by its router again within 60 s",
			time.Since(healStart).Round(time.Second), cs2.ReachabilityText, cs2.ReachableAddrs, cs2.P2PAddrs, gone.Round(time.Second))
	} else {
		t.Logf("C mapped by its router again %v after the routers restarted (it stopped saying so after %v): %v",
			time.Since(healStart).Round(time.Second), gone.Round(time.Second), cs2.ReachableAddrs)
		if err := answersAt(t, w.Stranger, publicAddr(t, w.r, RAddr), w.c, cs2.ReachableAddrs); err != nil {
			t.Errorf("C says %q, but a stranger cannot connect there: %v", cs2.ReachabilityText, err)
		}
	}

	// 6. A stranger gets no relay from R and no stream from A, B or C,
	// though it connects to C at its router's new mapping.
	strangerGetsNothing(t, w)
	// Whether A and D are direct again after the flush is logged, not
	// asserted: libp2p punches only when a relayed connection opens, and
	// go-libp2p v0.49 has no supported call to ask for another punch on
	// one that stays relayed.
	fd, _ = friend(w.a, "dnode")
	t.Logf("A-D %v after the routers restarted: %s", time.Since(healStart).Round(time.Second), fd.Path)
}
