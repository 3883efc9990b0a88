package grains

import (
	"context"
	"net/http"

	"erg"
)

// Handle is a grain of this node's own, on its grain origin: the proxy's
// view of it, and the node's API's.
type Handle struct {
	// One pointer, the grain's (which knows its Service): a Handle in an
	// interface, as the proxy takes it on every request, costs no
	// allocation.
	g *Info
}

// Handle finds a grain of this node's for its origin.
func (s *Service) Handle(id string) (Handle, error) {
	g, err := s.Lookup(id)
	if err != nil {
		return Handle{}, err
	}
	return Handle{g}, nil
}

// Describe returns the grain as who sees it, if who may use it, without
// its resource use: the powerbox describes grains on every use of a
// grant, and reading a sandbox's cgroup there would be work on a hot
// path. WithUsage adds it where a page shows it.
func (h Handle) Describe(ctx context.Context, who erg.User) (erg.Grain, error) {
	g, role, _, err := h.g.s.Access(ctx, who, h.g.id)
	if err != nil {
		return erg.Grain{}, err
	}
	names, err := h.g.s.cfg.Usernames(ctx)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.g.s.ToAPI(g, who, role, names), nil
}

// Open is Describe with a one-time login URL for the grain's origin.
func (h Handle) Open(ctx context.Context, who erg.User) (erg.Grain, error) {
	g, role, shareID, err := h.g.s.Access(ctx, who, h.g.id)
	if err != nil {
		return erg.Grain{}, err
	}
	return h.g.s.WithLoginURL(ctx, g, who.ID, shareID, role)
}

// Redeem spends a one-time login token for the grain and returns a session token.
func (h Handle) Redeem(ctx context.Context, token string) (string, error) {
	return h.g.s.Sessions().Redeem(ctx, LocalGrain, h.g.id, token)
}

// Viewer authenticates a session token for the grain.
func (h Handle) Viewer(ctx context.Context, session string) (erg.Viewer, error) {
	s, g := h.g.s, h.g
	se, err := s.Sessions().Check(ctx, session, g.id, func(ctx context.Context, hash string) (Session, error) {
		return s.loadSession(ctx, hash, g)
	})
	if err != nil {
		return erg.Viewer{}, err
	}
	s.mu.RLock()
	role, _ := g.app.Role(se.Role)
	s.mu.RUnlock()
	return erg.Viewer{
		UserID:      se.UserID,
		Username:    se.Username,
		Permissions: role.Permissions,
		SessionID:   se.SessionID,
		Session:     se.ctx,
		Expires:     se.Expires,
		Account:     se.AccountID,
	}, nil
}

// Acquire starts the grain if needed and leases a transport into it.
func (h Handle) Acquire(ctx context.Context) (http.RoundTripper, func(), error) {
	return h.g.s.manager.acquire(ctx, h.g.id)
}
