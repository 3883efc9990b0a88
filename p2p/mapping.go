package p2p

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The asker's side of the dial-back (dialback.go): which of the
// addresses the router maps to the node a friend got in at lately, and
// when to ask a friend again.

const (
	// mappingTrust is how long a friend's "I got in" stands. It is short
	// because a router can lose a mapping without the node seeing it:
	// go-libp2p renews its mappings every 20 s and says nothing when a
	// renewal fails, and a mapping lost and given back at the same port
	// (miniupnpd does so after a restart) looks unchanged. So while it
	// trusts an answer the node asks again every reaskEvery, and a
	// friend's "I could not get in" ends the trust at once.
	mappingTrust = time.Minute
	reaskEvery   = 20 * time.Second
	// askEvery is how soon the node asks again at first when friends
	// answered that they could not get in (an observed address no router
	// forwards, say); the wait doubles up to askAtMost. When no friend
	// could be asked (the connections are being made again), it asks
	// again in half of askEvery.
	askEvery  = 20 * time.Second
	askAtMost = 10 * time.Minute
)

// mappingState is what friends said of the node's mappings: the public
// addresses AutoNAT v2 tracks that are on none of the node's interfaces
// (its router's). An address that leaves the set takes what friends said
// of it along: if the router maps it again, a friend must get in again.
type mappingState struct {
	mu   sync.Mutex
	maps map[string]*mapEntry
	// wake tells the asker (confirmMappings) that the set changed.
	wake chan struct{}
}

type mapEntry struct {
	confirmed bool      // AutoNAT v2 found it reachable
	reached   time.Time // when a friend last got in; zero: none since it was mapped
	next      time.Time // when to ask friends; zero: at once
	wait      time.Duration
}

func newMappingState() *mappingState {
	return &mappingState{maps: map[string]*mapEntry{}, wake: make(chan struct{}, 1)}
}

// mappingsOf are the mappings among the addresses AutoNAT v2 tracks,
// with whether it confirmed each: the public ones on no interface of the
// node's (local holds its interfaces' IPs).
func mappingsOf(reachable, unreachable, unknown []ma.Multiaddr, local map[string]bool) map[string]bool {
	out := map[string]bool{}
	for i, list := range [][]ma.Multiaddr{reachable, unreachable, unknown} {
		for _, a := range list {
			if ip, err := manet.ToIP(a); err == nil && manet.IsPublicAddr(a) && !local[ip.String()] {
				out[a.String()] = i == 0
			}
		}
	}
	return out
}

// set makes maps the node's mappings now, forgetting what friends said
// of any that is gone.
func (s *mappingState) set(maps map[string]bool) {
	s.mu.Lock()
	for a := range s.maps {
		if _, ok := maps[a]; !ok {
			delete(s.maps, a)
		}
	}
	for a, confirmed := range maps {
		e := s.maps[a]
		if e == nil {
			e = &mapEntry{}
			s.maps[a] = e
		}
		e.confirmed = confirmed
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// friendReached are the mappings in maps (as mappingsOf gives them) that
// AutoNAT has not confirmed but a friend got in at lately, sorted.
func (s *mappingState) friendReached(maps map[string]bool, now time.Time) []ma.Multiaddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []ma.Multiaddr
	for a, confirmed := range maps {
		if e := s.maps[a]; !confirmed && e != nil && !e.reached.IsZero() && now.Sub(e.reached) < mappingTrust {
			out = append(out, ma.StringCast(a))
		}
	}
	slices.SortFunc(out, ma.Multiaddr.Compare)
	return out
}

// pending is a mapping to ask friends about, as it stood when asked.
type pending struct {
	addr  string
	entry *mapEntry
}

// due are the mappings to ask friends about now, and when the next one
// is due (zero: none is).
func (s *mappingState) due(now time.Time) (due []pending, next time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for a, e := range s.maps {
		switch {
		case e.confirmed:
		case !now.Before(e.next):
			due = append(due, pending{a, e})
		case next.IsZero() || e.next.Before(next):
			next = e.next
		}
	}
	slices.SortFunc(due, func(p, q pending) int { return strings.Compare(p.addr, q.addr) })
	return due, next
}

// answered records what friends said of a mapping: whether one
// answered, and whether one got in; began says a friend got in where
// none had since the mapping appeared or a friend last could not. An
// answer about a mapping that went away meanwhile is dropped, also when
// the router has mapped the address again since.
func (s *mappingState) answered(p pending, answered, reached bool, now time.Time) (began bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.maps[p.addr]
	if e != p.entry {
		return false
	}
	switch {
	case reached:
		began = e.reached.IsZero() || now.Sub(e.reached) >= mappingTrust
		e.reached, e.next, e.wait = now, now.Add(reaskEvery), 0
	case answered:
		e.reached = time.Time{}
		e.wait = min(max(2*e.wait, askEvery), askAtMost)
		e.next = now.Add(e.wait)
	default:
		e.next = now.Add(askEvery / 2)
	}
	return began
}

// watchMappings keeps x.maps to the addresses AutoNAT v2 tracks, as
// libp2p's event bus announces them (the host emits the event whenever
// one is added, removed or found reachable or not).
func (x *Host) watchMappings(sub event.Subscription) {
	defer x.wg.Done()
	defer sub.Close()
	for {
		select {
		case <-x.ctx.Done():
			return
		case e := <-sub.Out():
			ev := e.(event.EvtHostReachableAddrsChanged)
			x.maps.set(mappingsOf(ev.Reachable, ev.Unreachable, ev.Unknown, localIPs()))
		}
	}
}

func (x *Host) subscribeMappings() (event.Subscription, error) {
	return x.h.EventBus().Subscribe(new(event.EvtHostReachableAddrsChanged), eventbus.Name("erg mappings"))
}

// confirmMappings asks friends to dial the node at each mapping that
// neither AutoNAT nor a friend confirmed lately: at once when the router
// maps a new port (after a restart, say), and again every reaskEvery
// while a friend gets in.
func (x *Host) confirmMappings() {
	defer x.wg.Done()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	for {
		due, next := x.maps.due(time.Now())
		for _, p := range due {
			answered, reached := x.askFriends(p.addr)
			if x.maps.answered(p, answered, reached, time.Now()) {
				x.log.Info("a friend reached this node at its router's mapping", "addr", p.addr)
			}
		}
		if len(due) > 0 {
			continue // the asks took time: look again
		}
		if !next.IsZero() {
			wake.Reset(time.Until(next))
		} else {
			wake.Stop()
		}
		select {
		case <-x.ctx.Done():
			return
		case <-x.maps.wake:
		case <-wake.C:
		}
	}
}
