package lab

import (
	"strings"
	"testing"
	"time"

	"erg/internal/testkit"
	"erg/nodetest"
	"erg/p2p"
)

// TestMappedOnlyWhileAFriendGetsIn: C says "mapped by the router" only
// while a friend gets in at the mapping. C's router restarts miniupnpd,
// which forgets the mapping until go-libp2p's next renewal maps the same
// port again (nothing on C sees it was gone), and meanwhile the router
// drops every new connection from the internet: C stops saying "mapped"
// within a minute (p2p asks a friend again every 20 s, and a friend's
// "I could not get in" ends the trust), and does not say it again while
// the router drops, though the mapping is back. When the router lets
// connections in again, R (C's friend) gets in, C says "mapped" again,
// and a stranger connects at that address.
//
// Before the fix (a friend's answer trusted for 10 minutes, and not
// asked again meanwhile), C said "mapped" all through.
func TestMappedOnlyWhileAFriendGetsIn(t *testing.T) {
	skipUnlessLab(t)
	in := NewInternet(t)
	env := nodetest.New(t)
	r := env.Process("rnode", nodetest.Netns(in.R.Full, in.R.DialContext), nodetest.Owner("rita"))
	c := env.Process("cnode", nodetest.Netns(in.C.Host.Full, in.C.Host.DialContext), nodetest.Owner("carol"),
		nodetest.Bootstrap(publicAddr(t, r, RAddr)))
	env.Befriend(r, c)
	before := awaitReach(t, c, p2p.Mapped)

	undo := in.C.DropIncoming()
	in.RestartMiniupnpd()
	start := time.Now()
	since := func() time.Duration { return time.Since(start).Round(100 * time.Millisecond) }
	var s = c.Status()
	if err := testkit.Poll(75*time.Second, func() bool {
		s = c.Status()
		return s.Reachability != p2p.Mapped
	}); err != nil {
		undo()
		t.Fatalf("C still says %q %v %v after its router lost the mapping and drops every connection from the internet", s.ReachabilityText, since(), s.ReachableAddrs)
	}
	t.Logf("C no longer says mapped %v after its router lost the mapping: %s", since(), s.ReachabilityText)
	// go-libp2p maps the port again within 20 s of the restart (and,
	// had the router come back on a new control port, some 30-50 s
	// after): hold the router shut past that.
	for hold := start.Add(60 * time.Second); time.Now().Before(hold); time.Sleep(250 * time.Millisecond) {
		if s = c.Status(); s.Reachability == p2p.Mapped {
			undo()
			t.Fatalf("C says %q %v %v after its router lost the mapping, while the router drops every connection from the internet",
				s.ReachabilityText, since(), s.ReachableAddrs)
		}
	}
	t.Logf("C did not say mapped while the router dropped connections (%v); P2P addresses %v", since(), s.P2PAddrs)

	// Friends that could not get in are asked again later and later (20,
	// 40, 80 s), so the next ask may be 80 s away.
	undo()
	open := time.Now()
	if err := testkit.Poll(2*time.Minute, func() bool {
		s = c.Status()
		return s.Reachability == p2p.Mapped
	}); err != nil {
		t.Fatalf("C %s %v after its router let connections in again, want mapped", s.ReachabilityText, time.Since(open).Round(time.Second))
	}
	t.Logf("C mapped again %v after its router let connections in: %v (before: %v)", time.Since(open).Round(100*time.Millisecond), s.ReachableAddrs, before.ReachableAddrs)
	if !strings.Contains(s.ReachableAddrs[0], "/ip4/"+in.C.WAN+"/") {
		t.Errorf("C says %q, want its router's address %s", s.ReachabilityText, in.C.WAN)
	}
	if err := answersAt(t, in.Stranger, publicAddr(t, r, RAddr), c, s.ReachableAddrs); err != nil {
		t.Errorf("C says %q, but a stranger cannot connect there: %v", s.ReachabilityText, err)
	}
}
