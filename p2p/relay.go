package p2p

import (
	"context"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/autorelay"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// Friends tells the host whom it trusts: only friends may use it as a
// relay, and friends are where it looks for relays of its own.
type Friends interface {
	IsFriend(peer.ID) bool
	// FriendPeers are the friends, with the addresses stored for them.
	FriendPeers() []peer.AddrInfo
}

// SetFriends tells the host who its friends are; until it is called, no
// one may use the host as a relay.
func (x *Host) SetFriends(f Friends) { x.friends.Store(&f) }

func (x *Host) friendsOf() Friends {
	if f := x.friends.Load(); f != nil {
		return *f
	}
	return nil
}

// RelayResources are the relay's limits. A friend's grain session over
// the relay may last hours and move gigabytes (a download, a backup), so
// a circuit has no time or data cap (libp2p's default of 2 minutes and
// 128 KiB ends a session mid-page); the ACL admits only friends, and the
// counts below bound what they can hold open at once. The lab's raw
// relay (internal/lab) runs with the same, to be the baseline of erg's.
func RelayResources() relayv2.Resources {
	r := relayv2.DefaultResources()
	r.Limit = nil
	r.MaxReservations = 64     // friends with a slot here
	r.MaxCircuits = 32         // open relayed connections per friend
	r.BufferSize = 64 << 10    // per direction of a circuit: throughput over latency
	r.MaxReservationsPerIP = 8 // a household's nodes
	r.ReservationTTL = time.Hour
	return r
}

// friendsOnly is the relay's ACL: a reservation only for a friend, and a
// circuit only between two of this node's friends. A stranger gets
// nothing, even to reach a friend.
type friendsOnly struct{ x *Host }

func (a friendsOnly) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	f := a.x.friendsOf()
	return f != nil && f.IsFriend(p)
}

func (a friendsOnly) AllowConnect(src peer.ID, _ ma.Multiaddr, dest peer.ID) bool {
	f := a.x.friendsOf()
	return f != nil && f.IsFriend(src) && f.IsFriend(dest)
}

// internetOptions are what a host listening beyond loopback runs to be
// reachable from behind a home router, and to help its friends be.
func (x *Host) internetOptions(relays []peer.AddrInfo) []libp2p.Option {
	return []libp2p.Option{
		// Ask the home router (UPnP IGD, NAT-PMP) to forward the port. It
		// talks to the local network, so a node on loopback never does.
		libp2p.NATPortMap(),
		// Learn which addresses are reachable (AutoNAT v2, per address;
		// v1 for the host as a whole, which decides relaying), and answer
		// friends' and peers' probes in turn.
		libp2p.EnableAutoNATv2(),
		libp2p.EnableNATService(),
		// Relay for friends once reachable.
		libp2p.EnableRelayService(relayv2.WithResources(RelayResources()), relayv2.WithACL(friendsOnly{x})),
		// When not reachable, reserve on friends that relay and on the
		// owner's relays, at once (libp2p waits 3 minutes by default).
		libp2p.EnableAutoRelayWithPeerSource(x.relayCandidates(relays),
			autorelay.WithBootDelay(0),
			autorelay.WithMinCandidates(1),
			autorelay.WithNumRelays(2),
			autorelay.WithBackoff(30*time.Second),
			autorelay.WithMinInterval(10*time.Second)),
		// Move a relayed connection to a direct one where the NATs allow.
		libp2p.EnableHolePunching(),
	}
}

// relayCandidates offers autorelay the owner's relays first, then the
// friends (those that relay accept a reservation; the others refuse the
// protocol and autorelay backs off them).
func (x *Host) relayCandidates(static []peer.AddrInfo) autorelay.PeerSource {
	return func(ctx context.Context, num int) <-chan peer.AddrInfo {
		out := make(chan peer.AddrInfo, num)
		go func() {
			defer close(out)
			cands := append([]peer.AddrInfo(nil), static...)
			if f := x.friendsOf(); f != nil {
				cands = append(cands, f.FriendPeers()...)
			}
			for _, ai := range cands {
				if num == 0 {
					return
				}
				if ai.ID == x.h.ID() {
					continue
				}
				ai.Addrs = append(ai.Addrs, x.h.Peerstore().Addrs(ai.ID)...)
				if len(ai.Addrs) == 0 {
					continue
				}
				select {
				case out <- ai:
					num--
				case <-ctx.Done():
					return
				}
			}
		}()
		return out
	}
}

func parseRelays(addrs []string) ([]peer.AddrInfo, error) {
	var out []peer.AddrInfo
	for _, s := range addrs {
		ai, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("relay address %q: %w (want /ip4/ADDR/tcp/PORT/p2p/PEER)", s, err)
		}
		out = append(out, *ai)
	}
	return out, nil
}

// ConnPath says how the host is connected to a peer now: "direct", "relayed"
// (every connection goes through a relay) or "" (not connected).
func (x *Host) ConnPath(p peer.ID) string {
	path := ""
	for _, c := range x.h.Network().ConnsToPeer(p) {
		if c.IsClosed() {
			continue
		}
		if isRelayed(c) {
			path = "relayed"
			continue
		}
		return "direct"
	}
	return path
}

func isRelayed(c network.Conn) bool {
	_, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}
