package node

import (
	"context"
	"sync"

	"capnproto.org/go/capnp/v3/rpc"
	"github.com/libp2p/go-libp2p/core/peer"

	"erg/fed"
	"erg/friends"
)

// fedState is the node's side of the grains shared between friends' nodes
// (the friends themselves and the connections to them are package
// friends').
type fedState struct {
	mu sync.Mutex
	// servers are live grain capabilities given to friends, by share id.
	servers map[string]map[*fed.GrainServer]struct{}
	// remote caches grains friends shared with this node, by local id.
	remote map[string]*remoteGrain
}

// startFed loads the grains friends shared and starts the friends service:
// the friend and Cap'n Proto protocols, and keeping friends connected.
func (n *Node) startFed(ctx context.Context) error {
	n.fed = &fedState{
		servers: map[string]map[*fed.GrainServer]struct{}{},
		remote:  map[string]*remoteGrain{},
	}
	if err := n.loadRemoteGrains(ctx); err != nil {
		return err
	}
	fs, err := friends.New(ctx, friends.Config{
		Host:       n.p2p.host,
		DB:         n.db,
		Accounts:   n.accounts,
		Name:       n.cfg.Name,
		Log:        n.log,
		Shares:     n,
		Forgetting: n.forgettingFriend,
	})
	if err != nil {
		return err
	}
	n.friends = fs
	return nil
}

func (n *Node) stopFed() {
	if n.friends != nil {
		n.friends.Close()
	}
}

// forgettingFriend is called as a friend is forgotten: once its row is
// gone, with the shares made for it and the grains it shared (ON DELETE
// CASCADE), the live capabilities of those shares end and the grains it
// shared are forgotten.
func (n *Node) forgettingFriend(ctx context.Context, peerID string) (func(), error) {
	rows, err := n.db.QueryContext(ctx, `SELECT id FROM shares WHERE friend_peer = ?`, peerID)
	if err != nil {
		return nil, err
	}
	var shareIDs []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		shareIDs = append(shareIDs, s)
	}
	rows.Close()
	return func() {
		for _, s := range shareIDs {
			n.revokeServers(s)
		}
		n.forgetRemoteFrom(peerID)
	}, nil
}

func (n *Node) friendByPeer(ctx context.Context, p string) (friends.Friend, error) {
	return n.friends.ByPeer(ctx, p)
}

func (n *Node) friendByName(ctx context.Context, name string) (friends.Friend, error) {
	return n.friends.ByName(ctx, name)
}

// friendNames maps friends' peer ids to their names.
func (n *Node) friendNames(ctx context.Context) map[string]string {
	return n.friends.Names(ctx)
}

// fedConn is one Cap'n Proto connection to a friend's node.
type fedConn struct {
	c    *friends.Conn
	conn *rpc.Conn
	gw   fed.Gateway
}

// gateway returns the friend's Gateway over this node's connection to it,
// connecting (and finding the friend in the DHT) if needed.
func (n *Node) gateway(ctx context.Context, id peer.ID) (*fedConn, error) {
	c, err := n.friends.Gateway(ctx, id)
	if err != nil {
		return nil, err
	}
	return &fedConn{c: c, conn: c.RPC(), gw: c.Gateway()}, nil
}

// callFriend makes a call on a friend's Gateway, dialing anew once if the
// connection turns out to be dead.
func (n *Node) callFriend(ctx context.Context, id peer.ID, call func(fed.Gateway) error) error {
	return n.friends.Call(ctx, id, call)
}

// dropConn closes a connection to a friend that failed a call, so the
// next call dials anew.
func (n *Node) dropConn(id peer.ID, c *fedConn) { n.friends.Drop(id, c.c) }
