package p2p

import (
	"slices"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"
)

// TestMappingTrust: a friend's "I got in" at a mapping stands for
// mappingTrust and no longer; it is asked again every reaskEvery, and a
// "no" ends it at once; a mapping that leaves the set AutoNAT tracks and
// comes back at the same address is not trusted until a friend gets in
// again (the router may have lost it and mapped it anew); an answer
// about a mapping that went away while friends were asked is dropped.
func TestMappingTrust(t *testing.T) {
	const m = "/ip4/1.2.0.3/tcp/4001"
	t0 := time.Now()
	s := newMappingState()
	mapped := map[string]bool{m: false}
	trusted := func(at time.Time) bool { return len(s.friendReached(mapped, at)) == 1 }
	ask := func(at time.Time) pending {
		t.Helper()
		due, _ := s.due(at)
		if len(due) != 1 || due[0].addr != m {
			t.Fatalf("due at +%v: %v, want %s", at.Sub(t0), due, m)
		}
		return due[0]
	}

	s.set(mapped)
	p := ask(t0)
	if !s.answered(p, true, true, t0) || !trusted(t0) {
		t.Fatal("a friend got in, and the mapping is not trusted")
	}
	if due, next := s.due(t0.Add(reaskEvery - time.Second)); len(due) != 0 || !next.Equal(t0.Add(reaskEvery)) {
		t.Errorf("due %v, next %v; want none until reaskEvery", due, next)
	}
	if !trusted(t0.Add(mappingTrust-time.Second)) || trusted(t0.Add(mappingTrust)) {
		t.Errorf("a friend's answer stands other than mappingTrust (%v)", mappingTrust)
	}

	// The mapping leaves the set and comes back at the same port.
	s.set(map[string]bool{})
	s.set(mapped)
	if trusted(t0) {
		t.Error("a mapping that went away and came back is trusted on a friend's word from before")
	}
	p = ask(t0) // at once
	s.answered(p, true, true, t0)

	// A friend could not get in: no longer trusted; asked again later and later.
	t1 := t0.Add(reaskEvery)
	p = ask(t1)
	if s.answered(p, true, false, t1); trusted(t1) {
		t.Error("trusted after a friend could not get in")
	}
	var waits []time.Duration
	at := t1
	for range 3 {
		_, next := s.due(at)
		waits = append(waits, next.Sub(at))
		at = next
		s.answered(ask(at), true, false, at)
	}
	if want := []time.Duration{askEvery, 2 * askEvery, 4 * askEvery}; !slices.Equal(waits, want) {
		t.Errorf("waits after friends could not get in: %v, want %v", waits, want)
	}

	// Asked; the mapping goes and comes back before the answer.
	s.set(map[string]bool{})
	s.set(mapped)
	p = ask(at)
	s.set(map[string]bool{})
	s.set(mapped)
	if s.answered(p, true, true, at); trusted(at) {
		t.Error("a friend's answer about a mapping gone since is trusted")
	}

	// AutoNAT confirmed it: friends are not asked.
	s.set(map[string]bool{m: true})
	if due, next := s.due(at.Add(time.Hour)); len(due) != 0 || !next.IsZero() {
		t.Errorf("a mapping AutoNAT confirmed is asked about: %v, %v", due, next)
	}
}

// TestMappingsOf: the mappings are the public addresses on no interface
// of the node's, with whether AutoNAT confirmed each.
func TestMappingsOf(t *testing.T) {
	c := ma.StringCast
	got := mappingsOf(
		[]ma.Multiaddr{c("/ip4/1.2.0.3/tcp/4001"), c("/ip4/1.2.0.10/tcp/4001")},
		[]ma.Multiaddr{c("/ip4/1.2.0.3/udp/4001/quic-v1")},
		[]ma.Multiaddr{c("/ip4/192.168.3.2/tcp/4001"), c("/ip4/1.2.0.3/tcp/4002")},
		map[string]bool{"1.2.0.10": true, "192.168.3.2": true})
	want := map[string]bool{"/ip4/1.2.0.3/tcp/4001": true, "/ip4/1.2.0.3/udp/4001/quic-v1": false, "/ip4/1.2.0.3/tcp/4002": false}
	if len(got) != len(want) {
		t.Fatalf("mappings %v, want %v", got, want)
	}
	for a, confirmed := range want {
		if c, ok := got[a]; !ok || c != confirmed {
			t.Errorf("mappings %v, want %v", got, want)
		}
	}
}
