package grains

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"erg"
	"erg/apppkg"
)

// Snapshotted is what the backup package needs of a grain to back it up
// and to make it again.
type Snapshotted struct {
	ID         string
	Owner      string // account id
	AppID      string
	AppName    string
	AppVersion int64
	Title      string
	Created    int64
	Var        string
}

// Snapshottable lists every grain on the node for a backup.
func (s *Service) Snapshottable() []Snapshotted {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Snapshotted, 0, len(s.cache))
	for _, g := range s.cache {
		out = append(out, Snapshotted{ID: g.id, Owner: g.ownerID, AppID: g.appID, AppName: g.app.Name, AppVersion: g.app.Version,
			Title: g.title, Created: g.created.Unix(), Var: filepath.Join(s.Dir(g.id), "var")})
	}
	return out
}

// Freeze pauses a grain's sandbox if it runs, for a consistent copy of
// its /var; thaw resumes it. A grain that is not running needs nothing.
func (s *Service) Freeze(id string) (thaw func(), err error) {
	sb := s.manager.sandboxOf(id)
	if sb == nil {
		return func() {}, nil
	}
	return sb.Freeze()
}

// RestoreNew makes a grain of appID for who, its /var filled by fill
// with what the backup says is size bytes: refused up front past the
// grain's disk bound, its owner's or the disk's floor. The app must be
// installed, at the version the backup needs or newer.
func (s *Service) RestoreNew(ctx context.Context, who erg.User, appID string, appVersion int64, title string, size int64, fill func(varDir string) error) (erg.Grain, error) {
	m, _, err := s.findApp(ctx, appID)
	if errors.Is(err, erg.ErrNotFound) {
		return erg.Grain{}, fmt.Errorf("%w: the backup is of app %s, which is not installed: install it first", erg.ErrInvalid, appID)
	}
	if err != nil {
		return erg.Grain{}, err
	}
	if m.Version < appVersion {
		return erg.Grain{}, fmt.Errorf("%w: the backup needs %s version %d or newer; version %d is installed", erg.ErrInvalid, m.Name, appVersion, m.Version)
	}
	s.mu.RLock()
	bound := s.diskBytesLocked(m, nil)
	s.mu.RUnlock()
	if err := s.checkRoom(who.ID, size, bound); err != nil {
		return erg.Grain{}, fmt.Errorf("restore %s: %w", title, err)
	}
	g, err := s.create(ctx, who, appID, title, func(varDir string, _ *apppkg.Manifest, uid uint32) error {
		if err := fill(varDir); err != nil {
			return err
		}
		return s.ownVar(varDir, uid)
	})
	if err != nil {
		return erg.Grain{}, err
	}
	names, err := s.cfg.Usernames(ctx)
	if err != nil {
		return erg.Grain{}, err
	}
	s.log.Info("grain restored", "grain", g.id, "app", appID)
	return s.ToAPI(g, who, "", names), nil
}

// RestoreOver replaces a grain's /var with what fill writes, which the
// backup says is size bytes (refused up front past the grain's bound,
// or past its owner's or the disk's floor counting what it replaces): the
// grain is stopped, the new /var filled beside the old, and swapped in;
// the old one goes only once the new one is whole.
func (s *Service) RestoreOver(ctx context.Context, who erg.User, id string, size int64, fill func(varDir string) error) error {
	g, err := s.Own(who, id)
	if err != nil {
		return err
	}
	if size > s.diskBytes(g) {
		return fmt.Errorf("restore %s: %w: it unpacks to %d MiB, more than the grain's %d MiB", g.Title(), erg.ErrTooLarge, size>>20, s.diskBytes(g)>>20)
	}
	used, _, _, err := s.DiskUse(id)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	// The new /var is filled beside the old one, so both count for the
	// floor; for the user's bound the old one goes.
	if err := s.checkUser(g.OwnerID(), max(size-used, 0)); err != nil {
		return fmt.Errorf("restore %s: %w", g.Title(), err)
	}
	if err := s.CheckFree(size); err != nil {
		return fmt.Errorf("restore %s: %w", g.Title(), err)
	}
	uid, err := s.grainUID(ctx, id)
	if err != nil {
		return err
	}
	if s.hasImage(id) {
		return s.restoreOverImage(ctx, id, uid, fill)
	}
	dir := s.Dir(id)
	next := filepath.Join(dir, "var.restore")
	old := filepath.Join(dir, "var.old")
	os.RemoveAll(next)
	os.RemoveAll(old)
	if err := os.Mkdir(next, 0o700); err != nil {
		return err
	}
	if err := fill(next); err != nil {
		os.RemoveAll(next)
		return err
	}
	if err := s.ownVar(next, uid); err != nil {
		os.RemoveAll(next)
		return err
	}
	if err := s.Stop(ctx, id, "restore"); err != nil {
		os.RemoveAll(next)
		return err
	}
	cur := filepath.Join(dir, "var")
	if err := os.Rename(cur, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
		os.RemoveAll(next)
		return err
	}
	if err := os.Rename(next, cur); err != nil {
		os.Rename(old, cur)
		return err
	}
	apppkg.RemoveTree(old)
	s.log.Info("grain restored over itself", "grain", id)
	return nil
}

// ownVar gives a restored /var to the grain's uid in root mode, where
// the grain runs as its own uid and must own what it finds.
func (s *Service) ownVar(varDir string, grainUID uint32) error {
	runner := s.cfg.Runner
	if os.Geteuid() != 0 || runner.Mode() != "root" {
		return nil
	}
	uid, gid := runner.SandboxUID()
	if grainUID != 0 {
		uid, gid = grainUID, grainUID
	}
	root, err := os.OpenRoot(varDir)
	if err != nil {
		return err
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return root.Lchown(p, int(uid), int(gid))
	})
}
