package node

import (
	"context"
	"net/http"

	"erg"
	"erg/powerbox"
)

// newPowerbox builds the powerbox on the node's grains, local and
// friends'. It needs what only the node sees whole: every grain a user
// may use, whichever service holds it.
func (n *Node) newPowerbox() *powerbox.Service {
	return powerbox.New(powerbox.Config{
		DB:     n.db,
		Log:    n.log.With("subsystem", "powerbox"),
		Derive: n.derive,
		Grains: n.Grains,
		// Without usage (Node.Grain's): grants are checked on every use.
		Grain: func(ctx context.Context, who erg.User, id string) (erg.Grain, error) {
			return describe(ctx, n, who, id)
		},
		Local:   n.grains,
		Friends: n.sharing,
		User:    n.accounts.User,
		Owns:    func(who erg.User, id string) bool { _, err := n.grains.Own(who, id); return err == nil },
		Acquire: func(ctx context.Context, id, role string) (http.RoundTripper, func(), error) {
			if rh, err := n.sharing.Handle(id); err == nil {
				return rh.AcquireAs(ctx, role) // the friend's node enforces the role
			}
			return n.grains.Acquire(ctx, id)
		},
	})
}
