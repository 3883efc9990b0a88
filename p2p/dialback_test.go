package p2p

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

func loopbackHost(t *testing.T) host.Host {
	t.Helper()
	h, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"), libp2p.DisableRelay(), libp2p.DisableMetrics())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestFriendDialsBack: a friend dials the asker back at the address it
// names, over each transport, on a connection of its own; an address where
// nothing listens is "not reached"; a stranger, an address on another IP
// than the asker's, a friend asking again at once, and garbage get the
// stream reset.
func TestFriendDialsBack(t *testing.T) {
	ctx := context.Background()
	asker, answerer, stranger := loopbackHost(t), loopbackHost(t), loopbackHost(t)
	d := newDialBacker(ctx, func() Friends { return fakeFriends{asker.ID(): true} })
	d.allowPrivate = true // all of this is on loopback
	answerer.SetStreamHandler(DialBackProtocol, d.serve)
	for _, h := range []host.Host{asker, stranger} {
		if err := h.Connect(ctx, peer.AddrInfo{ID: answerer.ID(), Addrs: answerer.Addrs()}); err != nil {
			t.Fatal(err)
		}
	}
	wait := func() { d.mu.Lock(); d.last = map[peer.ID]time.Time{}; d.mu.Unlock() }

	for _, a := range asker.Addrs() {
		ok, err := askDialBack(ctx, asker, answerer.ID(), a)
		if err != nil || !ok {
			t.Errorf("dial-back at %s: %v %v, want reached", a, ok, err)
		}
		wait()
	}
	if n := len(answerer.Network().ConnsToPeer(asker.ID())); n != 1 {
		t.Errorf("the answerer has %d connections to the asker, want its one (the dial-back's own host closed)", n)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ma.StringCast("/ip4/127.0.0.1/tcp/" + strings.Split(l.Addr().String(), ":")[1])
	l.Close()
	if ok, err := askDialBack(ctx, asker, answerer.ID(), dead); err != nil || ok {
		t.Errorf("dial-back at a closed port: %v %v, want not reached", ok, err)
	}
	// At once again: refused.
	if _, err := askDialBack(ctx, asker, answerer.ID(), asker.Addrs()[0]); err == nil {
		t.Error("a second ask at once was answered")
	}
	wait()
	other := ma.StringCast("/ip4/127.0.0.2/tcp/4001")
	if _, err := askDialBack(ctx, asker, answerer.ID(), other); err == nil {
		t.Error("the answerer dialled an address on another IP than the asker's")
	}
	wait()
	s, err := asker.NewStream(ctx, answerer.ID(), DialBackProtocol)
	if err != nil {
		t.Fatal(err)
	}
	WriteFrame(s, []byte("not a multiaddr"))
	if _, err := s.Read(make([]byte, 1)); err == nil {
		t.Error("garbage got an answer")
	}
	if _, err := askDialBack(ctx, stranger, answerer.ID(), stranger.Addrs()[0]); err == nil {
		t.Error("a stranger got an answer")
	}
}
