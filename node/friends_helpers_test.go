package node

import (
	"context"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg/db"
	"erg/friends"
)

// Test shorthands for the friends service's parts the node tests reach.

func (n *Node) connectFriend(ctx context.Context, id peer.ID) error {
	return n.friends.Connect(ctx, id)
}

func (n *Node) recordFriend(ctx context.Context, id peer.ID, name string, addrs []string) (friends.Friend, error) {
	return n.friends.Record(ctx, id, name, addrs)
}

func uniqueViolated(err error) bool { return db.UniqueViolated(err) }
