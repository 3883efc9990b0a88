package p2p

import (
	"net"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// Reachability kinds, from the best.
const (
	// Reachable: an address on one of the node's interfaces is reachable
	// from the internet (AutoNAT confirmed it).
	Reachable = "reachable"
	// Mapped: the node is behind NAT, and the router forwards a port to
	// it (UPnP or NAT-PMP, or by hand) that AutoNAT confirmed reachable,
	// or a friend dialled back (dialback.go).
	Mapped = "mapped"
	// Relayed: the node is behind NAT and reached through relays.
	Relayed = "relayed"
	// Unreachable: behind NAT with no relay yet.
	Unreachable = "unreachable"
	// Checking: the node listens beyond loopback and is still finding out.
	Checking = "checking"
	// LocalOnly: the node listens on loopback only.
	LocalOnly = "local"
)

// Reach is what the host knows of how others can reach it.
type Reach struct {
	Kind  string   // one of the kinds above
	Addrs []string // the reachable (or relayed) addresses, with /p2p/<id>
}

// Describe says Reach in words, as erg status and the Friends page show it.
func (r Reach) Describe() string {
	first := ""
	if len(r.Addrs) > 0 {
		first = r.Addrs[0]
	}
	switch r.Kind {
	case Reachable:
		return "reachable at " + first
	case Mapped:
		return "behind NAT, mapped by the router: reachable at " + first
	case Relayed:
		return "behind NAT, reached through relays"
	case Unreachable:
		return "behind NAT, not reachable yet (no relay has a slot for this node)"
	case Checking:
		return "checking whether the internet can reach this node"
	default:
		return "listening on this machine only"
	}
}

// confirmedAddrs is what the basic host tells of AutoNAT v2's findings.
type confirmedAddrs interface {
	ConfirmedAddrs() (reachable, unreachable, unknown []ma.Multiaddr)
}

// Reachability tells how other nodes can reach this one now. It reads
// AutoNAT v2's findings and the node's interfaces once.
func (x *Host) Reachability() Reach {
	if !x.internet {
		return Reach{Kind: LocalOnly}
	}
	full := func(a ma.Multiaddr) string { return a.String() + "/p2p/" + x.h.ID().String() }
	var reachable, unreachable, unknown []ma.Multiaddr
	if c, ok := x.h.(confirmedAddrs); ok {
		reachable, unreachable, unknown = c.ConfirmedAddrs()
	}
	local := localIPs()
	maps := mappingsOf(reachable, unreachable, unknown, local)
	var own, mapped []string
	for _, a := range reachable {
		if maps[a.String()] {
			mapped = append(mapped, full(a))
		} else if ip, err := manet.ToIP(a); err == nil && manet.IsPublicAddr(a) && local[ip.String()] {
			own = append(own, full(a))
		}
	}
	for _, a := range x.maps.friendReached(maps, time.Now()) {
		mapped = append(mapped, full(a))
	}
	switch {
	case len(own) > 0:
		return Reach{Kind: Reachable, Addrs: append(own, mapped...)}
	case len(mapped) > 0:
		return Reach{Kind: Mapped, Addrs: mapped}
	}
	var r Reach
	for _, a := range x.h.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
			r.Kind = Relayed
			r.Addrs = append(r.Addrs, full(a))
		}
	}
	if r.Kind != "" {
		return r
	}
	if rh, ok := x.h.(interface{ Reachability() network.Reachability }); ok && rh.Reachability() == network.ReachabilityPrivate {
		return Reach{Kind: Unreachable}
	}
	return Reach{Kind: Checking}
}

func localIPs() map[string]bool {
	out := map[string]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ip, _, err := net.ParseCIDR(a.String()); err == nil {
			out[ip.String()] = true
		}
	}
	return out
}
