package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// A friend's dial-back: a node behind a router that maps its port asks a
// friend to dial it at the mapped address, and says "mapped by the
// router" when the friend got in. AutoNAT v2 answers the same question,
// but each of its servers answers a client once in 2 minutes and an
// address needs two answers, so after a router restart (a new mapping)
// it took more than 90 s in the lab to say so again; a friend answers at
// once.
//
// The wire protocol, on a stream of DialBackProtocol:
//
//	asker:    one frame (WriteFrame) holding the address's bytes, at most
//	          maxDialBackAddr
//	answerer: one byte, dialBackReached or dialBackFailed, then it closes
//
// The answerer resets the stream of anyone but a friend, of a friend it
// answered less than dialBackEvery ago, beyond dialBackAtOnce answers in
// flight, and for an address that is not on the IP the asker's own direct
// connection comes from (so a friend cannot aim it at a third party), or
// not public.
const DialBackProtocol = "/erg/dial-back/1"

const (
	dialBackReached = 'y'
	dialBackFailed  = 'n'
	maxDialBackAddr = 256
	dialBackAtOnce  = 2
	dialBackEvery   = 5 * time.Second
	// dialBackTimeout bounds the answerer's dial; the asker waits a bit
	// longer for the answer.
	dialBackTimeout = 10 * time.Second
)

// dialBacker answers friends' dial-back requests.
type dialBacker struct {
	ctx     context.Context // the host's: its dials end when it closes
	friends func() Friends
	// allowPrivate lets it dial private addresses, for tests on loopback.
	allowPrivate bool

	slots chan struct{}
	mu    sync.Mutex
	last  map[peer.ID]time.Time
}

func newDialBacker(ctx context.Context, friends func() Friends) *dialBacker {
	return &dialBacker{ctx: ctx, friends: friends, slots: make(chan struct{}, dialBackAtOnce), last: map[peer.ID]time.Time{}}
}

func (d *dialBacker) serve(s network.Stream) {
	p := s.Conn().RemotePeer()
	if f := d.friends(); f == nil || !f.IsFriend(p) || !d.admit(p) {
		s.Reset()
		return
	}
	defer func() { <-d.slots }()
	ws := WrapStream(s, dialBackTimeout)
	b, err := ws.ReadFrame(maxDialBackAddr)
	if err != nil {
		s.Reset()
		return
	}
	a, err := ma.NewMultiaddrBytes(b)
	if err != nil || !d.sameIP(a, s.Conn()) {
		s.Reset()
		return
	}
	ctx, cancel := context.WithTimeout(d.ctx, dialBackTimeout)
	defer cancel()
	answer := byte(dialBackFailed)
	if reach(ctx, p, a) == nil {
		answer = dialBackReached
	}
	ws.Write([]byte{answer})
	s.Close()
}

// admit takes one of the answer slots for p, if it has not been answered
// too recently and a slot is free.
func (d *dialBacker) admit(p peer.ID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	if now.Sub(d.last[p]) < dialBackEvery {
		return false
	}
	select {
	case d.slots <- struct{}{}:
	default:
		return false
	}
	for q, t := range d.last {
		if now.Sub(t) >= dialBackEvery {
			delete(d.last, q)
		}
	}
	d.last[p] = now
	return true
}

// sameIP says whether a is a public address (or any, with allowPrivate)
// on the IP c's remote end has, c being a direct connection.
func (d *dialBacker) sameIP(a ma.Multiaddr, c network.Conn) bool {
	if isRelayed(c) || !d.allowPrivate && !manet.IsPublicAddr(a) {
		return false
	}
	want, err1 := manet.ToIP(c.RemoteMultiaddr())
	got, err2 := manet.ToIP(a)
	return err1 == nil && err2 == nil && want.Equal(got)
}

// reach makes a new connection to p at a and no other address, from a
// host of its own (the node's host would reuse the connection it has),
// and closes it again. The connection's handshake proves p is there.
func reach(ctx context.Context, p peer.ID, a ma.Multiaddr) error {
	h, err := libp2p.New(
		libp2p.NoListenAddrs,
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Transport(quic.NewTransport),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.ResourceManager(&network.NullResourceManager{}),
	)
	if err != nil {
		return err
	}
	defer h.Close()
	return h.Connect(ctx, peer.AddrInfo{ID: p, Addrs: []ma.Multiaddr{a}})
}

// askDialBack asks friend p to dial this host at a; true when it got in.
func askDialBack(ctx context.Context, h host.Host, p peer.ID, a ma.Multiaddr) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, dialBackTimeout+5*time.Second)
	defer cancel()
	s, err := h.NewStream(ctx, p, DialBackProtocol)
	if err != nil {
		return false, err
	}
	defer s.Close()
	ws := WrapStream(s, dialBackTimeout+5*time.Second)
	if err := WriteFrame(ws, a.Bytes()); err != nil {
		s.Reset()
		return false, err
	}
	s.CloseWrite()
	b, err := ws.R.ReadByte()
	if err != nil {
		return false, fmt.Errorf("dial-back from %s: %w", p, err)
	}
	return b == dialBackReached, nil
}

// askFriends asks up to two friends connected directly (a relayed
// connection has no IP of ours for them to check the address against)
// to dial the node at a: whether one answered, and whether one got in.
func (x *Host) askFriends(a string) (answered, reached bool) {
	f := x.friendsOf()
	addr, err := ma.NewMultiaddr(a)
	if f == nil || err != nil {
		return false, false
	}
	peers := f.FriendPeers()
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	asked := 0
	for _, ai := range peers {
		if asked == 2 || x.ctx.Err() != nil {
			break
		}
		if x.ConnPath(ai.ID) != "direct" {
			continue
		}
		asked++
		ok, err := askDialBack(x.ctx, x.h, ai.ID, addr)
		if err != nil {
			x.log.Debug("dial-back", "friend", ai.ID, "addr", a, "err", err)
			continue
		}
		if ok {
			return true, true
		}
		answered = true
	}
	return answered, false
}
