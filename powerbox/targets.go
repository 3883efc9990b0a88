package powerbox

import (
	"context"

	"erg"
)

// targets lists the grains who may pick, as targets.
func (s *Service) targets(ctx context.Context, who erg.User) ([]Target, error) {
	gs, err := s.cfg.Grains(ctx, who)
	if err != nil {
		return nil, err
	}
	out := make([]Target, 0, len(gs))
	for _, g := range gs {
		if t, ok := s.describe(g); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// target is one grain who may use, as a target.
func (s *Service) target(ctx context.Context, who erg.User, id string) (Target, error) {
	g, err := s.cfg.Grain(ctx, who, id)
	if err != nil {
		return Target{}, err
	}
	t, ok := s.describe(g)
	if !ok {
		return Target{}, erg.E(erg.NotFound, "no grain %q", id)
	}
	return t, nil
}

// describe is a grain as the powerbox sees it, for the user g was
// described to; a friend's grain whose share was revoked is none.
func (s *Service) describe(g erg.Grain) (Target, bool) {
	t := Target{ID: g.ID, Title: g.Title, AppID: g.AppID, AppName: g.AppName, Owner: g.Owner, From: g.From, Role: g.Role}
	if g.From != "" {
		if g.Revoked {
			return t, false
		}
		// A friend's grain: what the friend's node said of it, the roles
		// its share hands on among it (the owner's node enforces them).
		info, ok := s.cfg.Friends.Info(g.ID)
		if !ok {
			return t, false
		}
		t.Permissions, t.Offers, t.Roles, t.APIPath = info.Permissions, info.Offers, info.Roles, info.APIPath
		if len(t.Roles) == 0 {
			t.Roles = []erg.Role{{Name: g.Role, Permissions: t.Permissions}}
		}
		return t, true
	}
	info, err := s.cfg.Local.Lookup(g.ID)
	if err != nil {
		return t, false
	}
	m := info.App()
	own, ok := m.Role(g.Role)
	if !ok {
		return t, false
	}
	t.Permissions, t.Offers, t.APIPath = own.Permissions, m.Offers, m.APIPath
	for _, r := range m.RolesWithin(g.Role) {
		t.Roles = append(t.Roles, erg.Role{Name: r.Name, Title: r.Title, Permissions: r.Permissions})
	}
	return t, true
}
