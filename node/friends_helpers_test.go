package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/db"
	"erg/fed"
	"erg/friends"
)

// Test shorthands for the parts of the friends and fedgrains services the
// node tests reach.

func (n *Node) connectFriend(ctx context.Context, id peer.ID) error {
	return n.friends.Connect(ctx, id)
}

func (n *Node) recordFriend(ctx context.Context, id peer.ID, name string, addrs []string) (friends.Friend, error) {
	return n.friends.Record(ctx, id, name, addrs)
}

func (n *Node) friendByPeer(ctx context.Context, p string) (friends.Friend, error) {
	return n.friends.ByPeer(ctx, p)
}

// fedConn is one Cap'n Proto connection to a friend's node.
type fedConn struct{ gw fed.Gateway }

func (n *Node) gateway(ctx context.Context, id peer.ID) (*fedConn, error) {
	c, err := n.friends.Gateway(ctx, id)
	if err != nil {
		return nil, err
	}
	return &fedConn{gw: c.Gateway()}, nil
}

func connectionLost(err error) bool { return friends.ConnectionLost(err) }

// remoteGrains lists the grains friends shared with who.
func (n *Node) remoteGrains(ctx context.Context, who erg.User) []erg.Grain {
	return n.sharing.List(ctx, who)
}

// heldGrain is a grain a friend shared with this node, as its database
// holds it.
type heldGrain struct{ token []byte }

func (n *Node) remoteGrain(id string) *heldGrain {
	g := &heldGrain{}
	if err := n.db.QueryRow(`SELECT token FROM remote_grains WHERE id = ?`, id).Scan(&g.token); err != nil {
		return nil
	}
	return g
}

func uniqueViolated(err error) bool { return db.UniqueViolated(err) }
