package node

import (
	"context"
	"fmt"

	"erg"
	"erg/accounts"
	"erg/grains"
	"erg/shares"
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

// SetupNeeded implements webui.Backend.
func (n *Node) SetupNeeded(ctx context.Context) (bool, error) { return n.accounts.SetupNeeded(ctx) }

// Setup implements webui.Backend.
func (n *Node) Setup(ctx context.Context, token, username, password string) (erg.User, string, error) {
	return n.accounts.Setup(ctx, token, username, password)
}

func (n *Node) userByID(ctx context.Context, id string) (erg.User, error) {
	return n.accounts.User(ctx, id)
}

func (n *Node) userByName(ctx context.Context, name string) (erg.User, error) {
	return n.accounts.UserByName(ctx, name)
}

// Login implements webui.Backend.
func (n *Node) Login(ctx context.Context, username, password string) (erg.User, string, error) {
	return n.accounts.Login(ctx, username, password)
}

// ChangePassword implements webui.Backend.
func (n *Node) ChangePassword(ctx context.Context, who erg.User, current, password string) (string, error) {
	return n.accounts.ChangePassword(ctx, who, current, password)
}

// Logout implements webui.Backend.
func (n *Node) Logout(ctx context.Context, session string) error {
	return n.accounts.Logout(ctx, session)
}

// WebSession implements webui.Backend.
func (n *Node) WebSession(ctx context.Context, session string) (erg.User, string, error) {
	return n.accounts.WebSession(ctx, session)
}

// Owner implements webui.Backend.
func (n *Node) Owner(ctx context.Context) (erg.User, error) { return n.accounts.Owner(ctx) }

func requireOwner(who erg.User) error { return accounts.RequireOwner(who) }

func checkUsername(name string) (string, error) { return accounts.CheckUsername(name) }

// TokenUser implements webui.Backend.
func (n *Node) TokenUser(ctx context.Context, token string) (erg.User, error) {
	return n.accounts.TokenUser(ctx, token)
}

// NewAPIToken implements webui.Backend.
func (n *Node) NewAPIToken(ctx context.Context, who erg.User, label string) (erg.APIToken, error) {
	return n.accounts.NewAPIToken(ctx, who, label)
}

// APITokens implements webui.Backend.
func (n *Node) APITokens(ctx context.Context, who erg.User) ([]erg.APIToken, error) {
	return n.accounts.APITokens(ctx, who)
}

// RemoveAPIToken implements webui.Backend.
func (n *Node) RemoveAPIToken(ctx context.Context, who erg.User, id string) error {
	return n.accounts.RemoveAPIToken(ctx, who, id)
}

// Users implements webui.Backend.
func (n *Node) Users(ctx context.Context, who erg.User) ([]erg.User, error) {
	return n.accounts.Users(ctx, who)
}

// Invites implements webui.Backend.
func (n *Node) Invites(ctx context.Context, who erg.User) ([]erg.Invite, error) {
	return n.accounts.Invites(ctx, who)
}

// InviteUser implements webui.Backend.
func (n *Node) InviteUser(ctx context.Context, who erg.User, username string) (erg.Invite, error) {
	return n.accounts.InviteUser(ctx, who, username)
}

// CancelInvite implements webui.Backend.
func (n *Node) CancelInvite(ctx context.Context, who erg.User, id string) error {
	return n.accounts.CancelInvite(ctx, who, id)
}

// InviteInfo implements webui.Backend.
func (n *Node) InviteInfo(ctx context.Context, token string) (erg.Invite, error) {
	return n.accounts.InviteInfo(ctx, token)
}

// AcceptInvite implements webui.Backend.
func (n *Node) AcceptInvite(ctx context.Context, token, password string) (erg.User, string, error) {
	return n.accounts.AcceptInvite(ctx, token, password)
}

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
	n.forgetRemoteOf(u.ID)
	n.log.Info("user removed", "username", u.Username, "grains", len(theirs))
	return nil
}

// newShortID is a random id for rows people name in commands (shares,
// invites, tokens); it is not a secret.
func newShortID() string { return shares.NewID() }
