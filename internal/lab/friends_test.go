package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/nodetest"
	"erg/p2p"
)

// world is the lab's internet with an erg node in each place: R and a
// stranger on the public bridge, A, B and C in the homes.
type world struct {
	*Internet
	env           *nodetest.Env
	r, s, a, b, c *nodetest.Node
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
	nodetest.AwaitFor(t, 90*time.Second, n.Name+" to be "+kind, func() bool {
		s = n.Status()
		return s.Reachability == kind
	})
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

func TestFriendsAcrossTheInternet(t *testing.T) {
	skipUnlessLab(t)
	w := newWorld(t)
	// 1. R befriends A, B and C: each pastes R's invite code.
	for _, n := range []*nodetest.Node{w.a, w.b, w.c} {
		w.env.Befriend(w.r, n)
	}
	awaitReach(t, w.r, p2p.Reachable)
	// 2. C's router maps its port, and the internet dials C directly.
	cs := awaitReach(t, w.c, p2p.Mapped)
	if !strings.Contains(cs.ReachableAddrs[0], "/ip4/"+w.C.WAN+"/") {
		t.Errorf("C reachable at %v, want its router's address %s", cs.ReachableAddrs, w.C.WAN)
	}
	// A and B are reached through R, their friend.
	as := awaitReach(t, w.a, p2p.Relayed)
	awaitReach(t, w.b, p2p.Relayed)
	if !strings.Contains(as.ReachableAddrs[0], "/ip4/"+RAddr+"/") {
		t.Errorf("A relayed at %v, want through R (%s)", as.ReachableAddrs, RAddr)
	}
	// The homes befriend each other, through codes carrying relayed
	// addresses.
	w.env.Befriend(w.a, w.b)
	w.env.Befriend(w.a, w.c)
	w.env.Befriend(w.c, w.b)
	// 3. A and C punch through; A and B (hard NAT) stay relayed.
	awaitPath(t, w.a, "cnode", "direct")
	awaitPath(t, w.a, "bnode", "relayed")
	for _, n := range []*nodetest.Node{w.r, w.a, w.b, w.c} {
		fs, _ := n.Client().Friends(context.Background())
		for _, f := range fs {
			t.Logf("%s -> %s: online %v path %s", n.Name, f.Name, f.Online, f.Path)
		}
	}
}
