package node

import (
	"context"

	"erg/fedgrains"
	"erg/friends"
)

// newSharing loads the grains friends shared with this node; it serves
// friends once startFed has started the friends service.
func (n *Node) newSharing(ctx context.Context) (err error) {
	n.sharing, err = fedgrains.New(ctx, fedgrains.Config{
		DB:       n.db,
		Grains:   n.grains,
		Accounts: n.accounts,
		Derive:   n.derive,
		Origin:   n.grainOrigin,
		Log:      n.log,
	})
	return err
}

// startFed starts the friends service: the friend and Cap'n Proto
// protocols, and keeping friends connected; the grains shared between
// the nodes answer friends' calls from then on.
func (n *Node) startFed(ctx context.Context) error {
	fs, err := friends.New(ctx, friends.Config{
		Host:     n.p2p.host,
		DB:       n.db,
		Accounts: n.accounts,
		Name:     n.cfg.Name,
		Log:      n.log,
		Shares:   n.sharing,
		// A friend forgotten loses its shares here, and the space
		// offered to it with what it kept (n.backups starts after this).
		Forgetting: func(ctx context.Context, p string) (func(), error) {
			forgotten, err := n.sharing.Forgetting(ctx, p)
			if err != nil {
				return nil, err
			}
			return func() {
				if forgotten != nil {
					forgotten()
				}
				if n.backups != nil {
					n.backups.FriendGone(ctx, p)
				}
			}, nil
		},
	})
	if err != nil {
		return err
	}
	n.friends = fs
	n.sharing.Serve(fs)
	return nil
}

func (n *Node) stopFed() {
	if n.friends != nil {
		n.friends.Close()
	}
}
