package friends

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"capnproto.org/go/capnp/v3"
	"capnproto.org/go/capnp/v3/rpc"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"erg"
	"erg/fed"
)

// Conn is one Cap'n Proto connection this node opened to a friend's node.
type Conn struct {
	conn *rpc.Conn
	gw   fed.Gateway
}

// RPC is the connection itself; its Done closes when the connection ends.
func (c *Conn) RPC() *rpc.Conn { return c.conn }

// Gateway is the friend's bootstrap capability, good while the connection
// lasts.
func (c *Conn) Gateway() fed.Gateway { return c.gw }

// offered is what a friend's node calls on this one: the node's shares,
// and Unfriend, answered here.
type offered struct {
	Shares
	s *Service
}

func (o offered) Unfriend(ctx context.Context, p string) error { return o.s.Unfriend(ctx, p) }

func (s *Service) newConn(st network.Stream, remote peer.ID) *rpc.Conn {
	return fed.NewConn(st, capnp.Client(fed.NewGateway(remote.String(), offered{s.shares, s}, s.limiter)))
}

// serveCapnp serves Cap'n Proto RPC to a friend's node; anyone else's
// stream is reset before a byte is read.
func (s *Service) serveCapnp(st network.Stream) {
	remote := st.Conn().RemotePeer()
	if !s.IsFriend(remote) {
		s.log.Debug("capnp stream from a stranger refused", "peer", remote)
		st.Reset()
		return
	}
	conn := s.newConn(st, remote)
	s.mu.Lock()
	s.in[conn] = remote
	s.mu.Unlock()
	go func() {
		<-conn.Done()
		s.mu.Lock()
		delete(s.in, conn)
		s.mu.Unlock()
	}()
}

// Gateway returns this node's connection to a friend, connecting (and
// finding the friend in the DHT) if needed.
func (s *Service) Gateway(ctx context.Context, id peer.ID) (*Conn, error) {
	s.mu.Lock()
	c := s.out[id]
	s.mu.Unlock()
	if c != nil {
		select {
		case <-c.conn.Done():
		default:
			return c, nil
		}
	}
	// A friend that cannot be found makes a page wait this long at most.
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := s.Connect(ctx, id); err != nil {
		return nil, fmt.Errorf("cannot reach the friend's node: %w", err)
	}
	// A relay the owner rents may limit its circuits (time, bytes); the
	// session runs over one until hole punching or a friend's unlimited
	// relay gives a better path.
	st, err := s.host.Libp2p().NewStream(network.WithAllowLimitedConn(ctx, "friend"), id, fed.CapnpProtocol)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the friend's node: %w", err)
	}
	conn := s.newConn(st, id)
	c = &Conn{conn: conn, gw: fed.Gateway(conn.Bootstrap(context.Background()))}
	s.mu.Lock()
	if old := s.out[id]; old != nil {
		select {
		case <-old.conn.Done():
		default:
			// Another caller connected meanwhile: use theirs.
			s.mu.Unlock()
			c.gw.Release()
			conn.Close()
			return old, nil
		}
	}
	s.out[id] = c
	s.mu.Unlock()
	go func() {
		<-conn.Done()
		s.mu.Lock()
		if s.out[id] == c {
			delete(s.out, id)
		}
		s.mu.Unlock()
		c.gw.Release()
	}()
	return c, nil
}

// Call makes a call on a friend's Gateway, dialing anew once if the
// connection turns out to be dead.
func (s *Service) Call(ctx context.Context, id peer.ID, call func(fed.Gateway) error) error {
	for attempt := 0; ; attempt++ {
		c, err := s.Gateway(ctx, id)
		if err != nil {
			return err
		}
		err = call(c.gw)
		if err == nil || attempt > 0 || ctx.Err() != nil || !ConnectionLost(err) {
			return err
		}
		s.Drop(id, c)
	}
}

// ConnectionLost tells a call that failed because the connection died
// from one the friend's node refused: by the exception's type and the
// errors go-capnp and the libp2p stream return, not by their text.
func ConnectionLost(err error) bool {
	var connErr *network.ConnError
	return fed.ConnectionLost(err) || errors.Is(err, network.ErrReset) || errors.As(err, &connErr)
}

// Drop closes a connection to a friend that failed a call, so the next
// call dials anew.
func (s *Service) Drop(id peer.ID, c *Conn) {
	s.mu.Lock()
	if s.out[id] == c {
		delete(s.out, id)
	}
	s.mu.Unlock()
	c.conn.Close()
}

// closeConns ends every Cap'n Proto connection with a peer.
func (s *Service) closeConns(id peer.ID) {
	s.mu.Lock()
	var conns []*rpc.Conn
	if c := s.out[id]; c != nil {
		conns = append(conns, c.conn)
		delete(s.out, id)
	}
	for c, p := range s.in {
		if p == id {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// dial connects to a node: at the given addresses, else at those the DHT
// knows.
func (s *Service) dial(ctx context.Context, ai peer.AddrInfo) error {
	h := s.host.Libp2p()
	if h.Network().Connectedness(ai.ID) == network.Connected {
		return nil
	}
	var err error
	if len(ai.Addrs) > 0 {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = h.Connect(dctx, ai)
		cancel()
		if err == nil {
			return nil
		}
	}
	// A lookup that first tries the friend's stale entry in the routing
	// table gives up on it; the second, with that entry gone, finds the
	// addresses other peers know.
	found, ferr := s.host.DHT().FindPeer(ctx, ai.ID)
	if ferr != nil && ctx.Err() == nil {
		found, ferr = s.host.DHT().FindPeer(ctx, ai.ID)
	}
	if ferr != nil {
		if err == nil {
			return ferr
		}
		return fmt.Errorf("%w; and the DHT: %v", err, ferr)
	}
	// The failed dial above left a backoff on the peer; these are other
	// addresses.
	if err := h.Connect(network.WithForceDirectDial(ctx, "addresses from the DHT"), found); err != nil {
		return err
	}
	if s.IsFriend(ai.ID) {
		// Remember what the DHT said, less what just failed.
		failed := map[string]bool{}
		for _, a := range ai.Addrs {
			failed[a.String()] = true
		}
		var addrs []string
		for _, a := range found.Addrs {
			if !failed[a.String()] {
				addrs = append(addrs, a.String())
			}
		}
		b, _ := json.Marshal(addrs)
		s.db.ExecContext(ctx, `UPDATE friends SET addrs = ? WHERE peer = ?`, string(b), ai.ID.String())
	}
	return nil
}

// Connect connects to a friend: at its stored addresses and those the
// host learned since, else at those the DHT knows (which it then stores).
func (s *Service) Connect(ctx context.Context, id peer.ID) error {
	f, err := s.ByPeer(ctx, id.String())
	if err != nil {
		return fmt.Errorf("%w: not a friend", erg.ErrNotFound)
	}
	ai := peer.AddrInfo{ID: id}
	for _, a := range f.Addrs {
		if m, err := ma.NewMultiaddr(a); err == nil {
			ai.Addrs = append(ai.Addrs, m)
		}
	}
	// Addresses the host learned since (identify, the DHT) count too.
	ai.Addrs = append(ai.Addrs, s.host.Libp2p().Peerstore().Addrs(id)...)
	return s.dial(ctx, ai)
}

// loop keeps friends connected.
func (s *Service) loop(ctx context.Context) {
	for {
		fs, _ := s.List(ctx)
		for _, f := range fs {
			id, err := peer.Decode(f.Peer)
			if err != nil {
				continue
			}
			if s.host.Libp2p().Network().Connectedness(id) != network.Connected {
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				s.Connect(cctx, id)
				cancel()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(checkInterval):
		}
	}
}
