package node

import (
	"context"
	"fmt"

	"erg"
	"erg/accounts"
	"erg/grains"
)

// ownerID is the owner's account id (see package db's second migration).
const ownerID = accounts.OwnerID

func (n *Node) initAccounts(ctx context.Context) error {
	a, err := accounts.New(ctx, accounts.Config{
		DB:    n.db,
		Log:   n.log,
		Owner: n.cfg.Owner, // until they choose one: `erg run --owner`, or $USER
		URL:   n.URL,
		// Grain sessions cache their holder's username.
		Renamed: func(id string) { n.grains.Sessions().Drop(func(s grains.Session) bool { return s.AccountID == id }) },
	})
	if err != nil {
		return err
	}
	n.accounts = a
	return nil
}

// SetupURL is the one-time link that lets the owner choose a password, or
// "" when that is done.
func (n *Node) SetupURL() string { return n.accounts.SetupURL() }

// RemoveUser implements webui.Backend: the user's grains go, then their
// account, then whatever the node still holds for them.
func (n *Node) RemoveUser(ctx context.Context, who erg.User, username string) error {
	u, err := n.accounts.Removable(ctx, who, username)
	if err != nil {
		return err
	}
	theirs := n.grains.OwnedBy(u.ID)
	for _, id := range theirs {
		if err := n.grains.Remove(ctx, id); err != nil {
			return fmt.Errorf("remove %s's grains: %w", u.Username, err)
		}
	}
	if err := n.accounts.Delete(ctx, u.ID); err != nil {
		return err
	}
	n.grains.Sessions().Drop(func(s grains.Session) bool { return s.AccountID == u.ID })
	n.sharing.ForgetUser(u.ID)
	n.tokens.CutGone(ctx)
	n.log.Info("user removed", "username", u.Username, "grains", len(theirs))
	return nil
}
