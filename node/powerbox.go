package node

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"erg"
	"erg/powerbox"
)

// newPowerbox builds the powerbox on the node's grains, local and
// friends'. It needs what only the node sees whole: every grain a user
// may use, whichever service holds it.
func (n *Node) newPowerbox() *powerbox.Service {
	targets := func(ctx context.Context, who erg.User) ([]powerbox.Target, error) {
		gs, err := n.Grains(ctx, who)
		if err != nil {
			return nil, err
		}
		out := make([]powerbox.Target, 0, len(gs))
		for _, g := range gs {
			if t, ok := n.powerboxTarget(ctx, g); ok {
				out = append(out, t)
			}
		}
		return out, nil
	}
	return powerbox.New(powerbox.Config{
		DB:      n.db,
		Log:     n.log.With("subsystem", "powerbox"),
		Derive:  n.derive,
		Targets: targets,
		Target: func(ctx context.Context, who erg.User, id string) (powerbox.Target, error) {
			g, err := n.Grain(ctx, who, id)
			if err != nil {
				return powerbox.Target{}, err
			}
			t, ok := n.powerboxTarget(ctx, g)
			if !ok {
				return powerbox.Target{}, erg.E(erg.NotFound, "no grain %q", id)
			}
			return t, nil
		},
		User: n.accounts.User,
		Owns: func(who erg.User, id string) bool { _, err := n.grains.Own(who, id); return err == nil },
		Acquire: func(ctx context.Context, id string) (http.RoundTripper, func(), error) {
			h, err := n.resolve(id)
			if err != nil {
				return nil, nil, err
			}
			return h.Acquire(ctx)
		},
	})
}

// powerboxTarget is a grain as the powerbox sees it, for the user g was
// described to; a friend's grain whose share was revoked is none.
func (n *Node) powerboxTarget(ctx context.Context, g erg.Grain) (powerbox.Target, bool) {
	t := powerbox.Target{ID: g.ID, Title: g.Title, AppID: g.AppID, AppName: g.AppName, Owner: g.Owner, From: g.From, Role: g.Role}
	if g.From != "" {
		if g.Revoked {
			return t, false
		}
		// A friend's grain: the role the friend gave is all there is.
		var perms string
		n.db.QueryRowContext(ctx, `SELECT permissions FROM remote_grains WHERE id = ?`, g.ID).Scan(&perms)
		if perms != "" {
			t.Permissions = strings.Split(perms, ",")
		}
		t.Roles = []erg.Role{{Name: g.Role, Permissions: t.Permissions}}
		// A friend's node tells the app's name, not what it offers: an app
		// of that name here stands in for it.
		if apps, err := n.installer.Apps(ctx); err == nil {
			for _, a := range apps {
				if a.Name == g.AppName {
					t.Offers = a.Offers
				}
			}
		}
		return t, true
	}
	info, err := n.grains.Lookup(g.ID)
	if err != nil {
		return t, false
	}
	m := info.App()
	own, ok := m.Role(g.Role)
	if !ok {
		return t, false
	}
	t.Permissions, t.Offers, t.APIPath = own.Permissions, m.Offers, m.APIPath
	for _, r := range m.Roles {
		if !slices.ContainsFunc(r.Permissions, func(p string) bool { return !slices.Contains(own.Permissions, p) }) {
			t.Roles = append(t.Roles, erg.Role{Name: r.Name, Title: r.Title, Permissions: r.Permissions})
		}
	}
	return t, true
}
