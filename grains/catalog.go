package grains

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"erg"
	"erg/accounts"
	"erg/apppkg"
)

// findApp resolves an app by id, or by name when that is unambiguous.
func (s *Service) findApp(ctx context.Context, ref string) (*apppkg.Manifest, string, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, "", fmt.Errorf("%w: name an app (see the installed apps in `erg status`)", erg.ErrInvalid)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT manifest, tree FROM apps WHERE id = ? OR lower(name) = lower(?)`, ref, ref)
	if err != nil {
		return nil, "", err
	}
	defer rows.Close()
	var found []*apppkg.Manifest
	var trees []string
	for rows.Next() {
		var data, tree string
		if err := rows.Scan(&data, &tree); err != nil {
			return nil, "", err
		}
		var m apppkg.Manifest
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			return nil, "", err
		}
		if m.ID == ref {
			return &m, tree, nil
		}
		found = append(found, &m)
		trees = append(trees, tree)
	}
	if err := rows.Err(); err != nil {
		return nil, "", err
	}
	switch len(found) {
	case 0:
		return nil, "", fmt.Errorf("%w: no app %q is installed", erg.ErrNotFound, ref)
	case 1:
		return found[0], trees[0], nil
	}
	return nil, "", fmt.Errorf("%w: %d apps are named %q: use the app id", erg.ErrInvalid, len(found), ref)
}

var grainIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID is a random grain id: unguessable, and short enough for a host
// name. Friends' grains take theirs from here too, so ids never collide.
func NewID() string {
	b := make([]byte, 15) // 120 bits: unguessable, and 24 characters in a host name
	rand.Read(b)
	return grainIDEncoding.EncodeToString(b)
}

func checkTitle(title, fallback string) (string, error) {
	title = strings.TrimSpace(title)
	if title == "" {
		title = fallback
	}
	if len(title) > 200 {
		return "", fmt.Errorf("%w: title is longer than 200 characters", erg.ErrInvalid)
	}
	if strings.ContainsFunc(title, func(r rune) bool { return r < ' ' }) {
		return "", fmt.Errorf("%w: title has control characters", erg.ErrInvalid)
	}
	return title, nil
}

// NewGrain makes a grain of an app for who, with a login URL for its
// origin.
func (s *Service) NewGrain(ctx context.Context, who erg.User, appRef, title string) (erg.Grain, error) {
	g, err := s.create(ctx, who, appRef, title, nil)
	if err != nil {
		return erg.Grain{}, err
	}
	return s.WithLoginURL(ctx, g, who.ID, "", g.App().OwnerRole)
}

// create makes a grain's row and storage; fill, if set, puts the
// initial contents into its empty var dir. A failure leaves nothing.
func (s *Service) create(ctx context.Context, who erg.User, appRef, title string, fill func(varDir string, m *apppkg.Manifest, uid uint32) error) (*Info, error) {
	m, tree, err := s.findApp(ctx, appRef)
	if err != nil {
		return nil, err
	}
	if title, err = checkTitle(title, "Untitled "+m.Name); err != nil {
		return nil, err
	}
	id := NewID()
	dir := s.Dir(id)
	varDir := filepath.Join(dir, "var")
	if err := s.newVar(id, m); err != nil {
		s.unmountVar(id)
		apppkg.RemoveTree(dir)
		return nil, err
	}
	uid, err := s.grainUID(ctx, id)
	if err != nil {
		s.unmountVar(id)
		apppkg.RemoveTree(dir)
		return nil, err
	}
	if fill != nil {
		if err := fill(varDir, m, uid); err != nil {
			s.unmountVar(id)
			apppkg.RemoveTree(dir)
			s.dropGrainUID(ctx, id)
			return nil, err
		}
	}
	now := time.Now()
	_, err = s.db.ExecContext(ctx, `INSERT INTO grains (id, app_id, owner_id, title, created_at, last_used) VALUES (?, ?, ?, ?, ?, ?)`,
		id, m.ID, who.ID, title, now.Unix(), now.Unix())
	if err != nil {
		s.unmountVar(id)
		apppkg.RemoveTree(dir)
		s.dropGrainUID(ctx, id)
		return nil, fmt.Errorf("record grain: %w", err)
	}
	g := &Info{s: s, id: id, appID: m.ID, ownerID: who.ID, title: title, created: time.Unix(now.Unix(), 0), lastUsed: time.Unix(now.Unix(), 0), app: m, tree: tree, uid: uid}
	s.mu.Lock()
	s.cache[id] = g
	s.mu.Unlock()
	s.log.Info("grain created", "grain", id, "app", m.ID, "owner", who.Username)
	return g, nil
}

// WithLoginURL is a grain with a one-time login link for its origin, for
// an account (or "" for an anonymous visitor) through a share (or "" for
// the owner).
func (s *Service) WithLoginURL(ctx context.Context, g *Info, accountID, shareID, role string) (erg.Grain, error) {
	token, err := s.Sessions().NewLoginToken(ctx, LocalGrain, g.id, accountID, shareID)
	if err != nil {
		return erg.Grain{}, err
	}
	names, err := s.cfg.Usernames(ctx)
	if err != nil {
		return erg.Grain{}, err
	}
	out := s.ToAPI(g, erg.User{ID: accountID}, role, names)
	out.URL = s.cfg.Origin(g.id) + "/_erg/login?token=" + url.QueryEscape(token)
	return out, nil
}

// Rename changes the title of one of who's grains.
func (s *Service) Rename(ctx context.Context, who erg.User, id, title string) error {
	g, err := s.Own(who, id)
	if err != nil {
		return err
	}
	if title, err = checkTitle(title, ""); err != nil {
		return err
	}
	if title == "" {
		return fmt.Errorf("%w: the title is empty", erg.ErrInvalid)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE grains SET title = ? WHERE id = ?`, title, id); err != nil {
		return fmt.Errorf("rename grain: %w", err)
	}
	s.mu.Lock()
	g.title = title
	s.mu.Unlock()
	return nil
}

// RemoveGrain removes a grain who may remove. The node's owner may remove
// anyone's grain (to clean up after a user); anyone else only their own,
// and is told others' do not exist.
func (s *Service) RemoveGrain(ctx context.Context, who erg.User, id string) error {
	find := s.Own
	if who.Owner {
		find = func(_ erg.User, id string) (*Info, error) { return s.Lookup(id) }
	}
	g, err := find(who, id)
	if err != nil {
		return err
	}
	if g.OwnerID() != who.ID {
		s.log.Info("the owner removes a user's grain", "grain", id, "by", who.Username)
	}
	return s.Remove(ctx, id)
}

// Remove stops a grain and removes it, its sessions and its storage.
func (s *Service) Remove(ctx context.Context, id string) error {
	if err := s.manager.stop(ctx, id, "removed"); err != nil {
		return fmt.Errorf("stop grain %s: %w", id, err)
	}
	if _, err := s.db.ExecContext(ctx, `DELETE FROM grains WHERE id = ?`, id); err != nil {
		return fmt.Errorf("remove grain %s: %w", id, err)
	}
	s.mu.Lock()
	delete(s.cache, id)
	s.mu.Unlock()
	s.Sessions().Drop(func(se Session) bool { return se.GrainID == id })
	s.manager.forget(id)
	s.forgetUsage(id)
	dir := s.Dir(id)
	err := s.unmountVar(id)
	if err == nil {
		err = apppkg.RemoveTree(dir)
	}
	if err != nil {
		// Its uid stays taken while its files remain.
		s.log.Warn("grain storage left behind", "grain", id, "dir", dir, "err", err)
	} else {
		s.dropGrainUID(ctx, id)
	}
	s.log.Info("grain removed", "grain", id)
	return nil
}

// All lists every grain on the node, for its owner.
func (s *Service) All(ctx context.Context, who erg.User) ([]erg.NodeGrain, error) {
	if err := accounts.RequireOwner(who); err != nil {
		return nil, err
	}
	names, err := s.cfg.Usernames(ctx)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	all := make([]*Info, 0, len(s.cache))
	for _, g := range s.cache {
		all = append(all, g)
	}
	s.mu.RUnlock()
	out := make([]erg.NodeGrain, 0, len(all))
	for _, g := range all {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		ng := erg.NodeGrain{Grain: s.ToAPI(g, who, "", names)}
		ng.Usage = s.usageOf(g)
		ng.Size, _ = s.varUse(g.id) // ng.Usage.DiskBytes, measured once
		out = append(out, ng)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Owner != out[j].Owner {
			return out[i].Owner < out[j].Owner
		}
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Log is the kept output of one of who's grains.
func (s *Service) Log(ctx context.Context, who erg.User, id string) ([]byte, error) {
	if _, err := s.Own(who, id); err != nil {
		return nil, err
	}
	return s.manager.logOf(id), nil
}
