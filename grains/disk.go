package grains

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"erg"
	"erg/accounts"
	"erg/apppkg"
	"erg/sandbox"
)

// Disk: each grain's /var is bounded. As root, with loop devices and
// e2fsprogs, a grain made now gets its own ext4 image (Dir/<id>/var.img)
// mounted at Dir/<id>/var (sandbox.MountImage): the kernel says ENOSPC to
// a write past it and nothing else fills. The node mounts an image when
// the grain is made and when the node starts, keeps it mounted, and
// unmounts it when the grain is removed or the node stops; a change of
// bound resizes it at the grain's next start or the node's. Only the
// grain's own sandbox holds its image (others are cloned from a mount
// namespace without images, see sandbox/mounts.go), so a removed grain's
// space comes back at once. A
// node killed before it could unmount leaves its images mounted: the next
// start unmounts them first (sandbox.UnmountImagesUnder, under Dir only).
// A grain from before images keeps its plain var
// dir (copying its files into an image would double them on the disk at
// the worst moment), and so does every grain of an unprivileged node:
// those the node measures every DiskConfig.Check and stops when over,
// saying so in the grain's log; it cannot stop the writes themselves.
// Restores are checked up front against the grain's bound, the owner's
// bound over all their grains, and the disk's free space.

// Defaults of DiskConfig.
const (
	defaultDiskMB      = 1024
	defaultDiskFloorMB = 1024
	defaultDiskCheck   = 30 * time.Second
	minDiskMB          = 8
)

// DiskConfig bounds what grains keep.
type DiskConfig struct {
	// GrainMB bounds a grain's /var, in MiB, when its app sets no
	// limits.diskMB; 0 is 1 GiB.
	GrainMB int
	// UserMB bounds what all of one user's grains keep together, in MiB;
	// 0 is no bound.
	UserMB int
	// FloorMB is the free space, in MiB, a restore may not take the
	// grains' disk below; 0 is 1 GiB.
	FloorMB int
	// Check is how often grains without an image are measured; 0 is 30 s.
	Check time.Duration
	// NoImages keeps every grain's /var a plain dir even where images
	// would work (the usage check still applies).
	NoImages bool
}

type diskState struct {
	images bool // new grains get an image
	stop   context.CancelFunc
	done   chan struct{}
	logged sync.Map // grain id → struct{}: "plain var dir" said once
	over   sync.Map // grain id → struct{}: stopped over its bound
}

func (s *Service) initDisk() error {
	c := &s.cfg.Disk
	if c.GrainMB == 0 {
		c.GrainMB = defaultDiskMB
	}
	if c.FloorMB == 0 {
		c.FloorMB = defaultDiskFloorMB
	}
	if c.Check == 0 {
		c.Check = defaultDiskCheck
	}
	if c.GrainMB < minDiskMB || c.GrainMB > apppkg.MaxDiskMB || c.UserMB < 0 || c.FloorMB < 0 {
		return fmt.Errorf("%w: a grain's disk bound is %d to %d MiB (got %d), a user's 0 (none) or more (got %d)", erg.ErrInvalid, minDiskMB, apppkg.MaxDiskMB, c.GrainMB, c.UserMB)
	}
	switch err := sandbox.DiskImages(); {
	case c.NoImages:
		s.log.Info("grains' /var are plain dirs (images turned off): the node measures them and stops a grain over its bound, but cannot stop its writes")
	case err != nil || s.cfg.Runner.Mode() != "root":
		if err == nil {
			err = errors.New("the sandboxes do not run in root mode")
		}
		s.log.Warn("the kernel cannot bound grains' /var here: the node measures them and stops a grain over its bound, but cannot stop its writes", "why", err)
	default:
		s.disk.images = true
		// A node killed before it could unmount its images left them
		// mounted: they would hold the data dir busy, and keep an image
		// at its old size.
		if n, err := sandbox.UnmountImagesUnder(s.cfg.Dir); err != nil {
			return fmt.Errorf("unmount the grains' images a previous run left mounted: %w", err)
		} else if n > 0 {
			s.log.Info("unmounted the grains' images a previous run left mounted", "count", n)
		}
		s.mountAll()
	}
	return nil
}

// diskBytes is the bound on grain g's /var.
func (s *Service) diskBytes(g *Info) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.diskBytesLocked(g.app, g.diskMB)
}

func (s *Service) diskBytesLocked(m *apppkg.Manifest, owner *int) int64 {
	mb := s.cfg.Disk.GrainMB
	if m != nil && m.Limits.DiskMB > 0 {
		mb = m.Limits.DiskMB
	}
	if owner != nil {
		mb = *owner
	}
	return int64(mb) << 20
}

func (s *Service) imagePath(id string) string { return filepath.Join(s.Dir(id), "var.img") }
func (s *Service) varDir(id string) string    { return filepath.Join(s.Dir(id), "var") }

// hasImage reports whether grain id's /var is an image.
func (s *Service) hasImage(id string) bool {
	_, err := os.Stat(s.imagePath(id))
	return err == nil
}

// newVar makes a new grain's var dir, on an image where images work.
func (s *Service) newVar(id string, m *apppkg.Manifest) error {
	v := s.varDir(id)
	if err := os.MkdirAll(v, 0o700); err != nil {
		return fmt.Errorf("create grain storage: %w", err)
	}
	if !s.disk.images {
		return nil
	}
	s.mu.RLock()
	size := s.diskBytesLocked(m, nil)
	s.mu.RUnlock()
	if err := sandbox.MountImage(s.imagePath(id), v, size); err != nil {
		return fmt.Errorf("create grain storage: %w", err)
	}
	return nil
}

// mountVar makes sure a grain about to start has its image mounted, at
// its current bound.
func (s *Service) mountVar(g *Info) error {
	id := g.id
	if _, over := s.disk.over.Load(id); over {
		used, bound, _, err := s.DiskUse(id)
		if err != nil {
			return err
		}
		if used > bound {
			return fmt.Errorf("%w: grain %s keeps %d MiB in /var, more than its bound of %d MiB: the node's owner can raise it (erg grain disk %s --mb N)", erg.ErrTooLarge, id, used>>20, bound>>20, id)
		}
		s.disk.over.Delete(id)
	}
	if !s.disk.images || !s.hasImage(id) {
		if _, said := s.disk.logged.LoadOrStore(id, struct{}{}); !said && s.disk.images {
			s.log.Info("grain's /var is a plain dir from before disk images: the node measures it and stops the grain over its bound, the kernel does not bound it", "grain", id)
		}
		return nil
	}
	size := s.diskBytes(g)
	v := s.varDir(id)
	if fi, err := os.Stat(s.imagePath(id)); err == nil && fi.Size() != size {
		// Unmounted to be resized: the grain is stopped, so nothing
		// else holds it.
		if err := sandbox.UnmountImage(v); err != nil {
			return err
		}
	}
	return sandbox.MountImage(s.imagePath(id), v, size)
}

// unmountVar unmounts a grain's image, if it has one.
func (s *Service) unmountVar(id string) error {
	if !s.hasImage(id) {
		return nil
	}
	return sandbox.UnmountImage(s.varDir(id))
}

// mountAll mounts every grain's image, at its bound, when the node
// starts: what the node reads of a grain's /var without starting it (a
// backup, its disk use) is on the image.
func (s *Service) mountAll() {
	for _, id := range s.ids() {
		g, err := s.Lookup(id)
		if err == nil && s.hasImage(id) {
			err = s.mountVar(g)
		}
		if err != nil {
			s.log.Warn("mount grain /var", "grain", id, "err", err)
		}
	}
}

func (s *Service) unmountAll() {
	for _, id := range s.ids() {
		if err := s.unmountVar(id); err != nil {
			s.log.Warn("unmount grain /var", "grain", id, "err", err)
		}
	}
}

// DiskUse is what grain id keeps in /var and its bound, in bytes, and
// whether the kernel enforces the bound.
func (s *Service) DiskUse(id string) (used, bound int64, enforced bool, err error) {
	g, err := s.Lookup(id)
	if err != nil {
		return 0, 0, false, err
	}
	bound = s.diskBytes(g)
	v := s.varDir(id)
	if m, _ := sandbox.Mounted(v); m {
		used, _, err = sandbox.ImageUsage(v)
		return used, bound, true, err
	}
	used, err = sandbox.DiskUsage(v)
	return used, bound, false, err
}

// DiskOf is a grain's disk use and bound, for its owner or the node's.
func (s *Service) DiskOf(who erg.User, id string) (erg.GrainDisk, error) {
	g, err := s.Lookup(id)
	if err == nil && !who.Owner {
		g, err = s.Own(who, id)
	}
	if err != nil {
		return erg.GrainDisk{}, err
	}
	used, bound, enforced, err := s.DiskUse(id)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return erg.GrainDisk{}, err
	}
	d := erg.GrainDisk{UsedBytes: used, BoundBytes: bound, Enforced: enforced}
	s.mu.RLock()
	if g.diskMB != nil {
		d.OwnerMB = new(*g.diskMB)
	}
	s.mu.RUnlock()
	return d, nil
}

// SetDiskMB sets, for the node's owner, the bound on one grain's /var in
// MiB over its app's and the node's; nil goes back to theirs. It applies
// from the grain's next start (an image is resized then); a bound below
// what the grain keeps is refused.
func (s *Service) SetDiskMB(ctx context.Context, who erg.User, id string, mb *int) error {
	if err := accounts.RequireOwner(who); err != nil {
		return err
	}
	g, err := s.Lookup(id)
	if err != nil {
		return err
	}
	var v any
	if mb != nil {
		if *mb < minDiskMB || *mb > apppkg.MaxDiskMB {
			return fmt.Errorf("%w: a grain's disk bound is %d to %d MiB, not %d", erg.ErrInvalid, minDiskMB, apppkg.MaxDiskMB, *mb)
		}
		used, _, _, err := s.DiskUse(id)
		if err != nil {
			return err
		}
		if int64(*mb)<<20 < used {
			return fmt.Errorf("%w: grain %s keeps %d MiB, more than %d MiB: remove some of its data first", erg.ErrInvalid, id, used>>20, *mb)
		}
		v = *mb
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO grain_limits (grain_id, disk_mb) VALUES (?, ?)
		ON CONFLICT (grain_id) DO UPDATE SET disk_mb = excluded.disk_mb`, id, v); err != nil {
		return fmt.Errorf("set grain %s disk bound: %w", id, err)
	}
	s.mu.Lock()
	if mb != nil {
		c := *mb
		g.diskMB = &c
	} else {
		g.diskMB = nil
	}
	s.mu.Unlock()
	return nil
}

// checkRoom refuses up front to add n bytes to a grain of ownerID's
// bounded at bound (0: not one grain's): over the grain's bound, over
// the owner's over all their grains, or taking the disk's free space
// below the node's floor.
func (s *Service) checkRoom(ownerID string, n, bound int64) error {
	if bound > 0 && n > bound {
		return fmt.Errorf("%w: it unpacks to %d MiB, more than the grain's %d MiB", erg.ErrTooLarge, n>>20, bound>>20)
	}
	if err := s.checkUser(ownerID, n); err != nil {
		return err
	}
	return s.CheckFree(n)
}

// checkUser refuses to add n bytes to ownerID's grains past the bound on
// what one user's grains keep together.
func (s *Service) checkUser(ownerID string, n int64) error {
	if lim := int64(s.cfg.Disk.UserMB) << 20; lim > 0 {
		var total int64
		for _, id := range s.OwnedBy(ownerID) {
			used, _, _, err := s.DiskUse(id)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			total += used
		}
		if total+n > lim {
			return fmt.Errorf("%w: it unpacks to %d MiB and the user's grains keep %d MiB, more than their %d MiB together", erg.ErrTooLarge, n>>20, total>>20, lim>>20)
		}
	}
	return nil
}

// CheckFree refuses to add n bytes to the grains' disk (a restore, an
// app's package) when that would leave less free than the node's floor.
func (s *Service) CheckFree(n int64) error {
	dir := s.cfg.Dir // made with the first grain: until then, its parent's disk
	for _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) && dir != filepath.Dir(dir); _, err = os.Stat(dir) {
		dir = filepath.Dir(dir)
	}
	free, _, err := sandbox.FreeSpace(dir)
	if err != nil {
		return err
	}
	if floor := int64(s.cfg.Disk.FloorMB) << 20; free-n < floor {
		return fmt.Errorf("%w: it unpacks to %d MiB, which would leave %d MiB free on the node's disk, below its floor of %d MiB", erg.ErrTooLarge, n>>20, max(free-n, 0)>>20, floor>>20)
	}
	return nil
}

// startDiskWatch measures, every Check, the running grains the kernel
// does not bound, and stops any over its bound.
func (s *Service) startDiskWatch() {
	ctx, cancel := context.WithCancel(context.Background())
	s.disk.stop, s.disk.done = cancel, make(chan struct{})
	go func() {
		defer close(s.disk.done)
		t := time.NewTicker(s.cfg.Disk.Check)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.checkDisks(ctx)
			}
		}
	}()
}

func (s *Service) stopDiskWatch() {
	s.disk.stop()
	<-s.disk.done
}

func (s *Service) checkDisks(ctx context.Context) {
	for _, id := range s.ids() {
		if ctx.Err() != nil || !s.manager.running(id) {
			continue
		}
		used, bound, enforced, err := s.DiskUse(id)
		if err != nil || enforced || used <= bound {
			continue
		}
		msg := fmt.Sprintf("stopped: its /var keeps %d MiB, more than its bound of %d MiB; the node cannot stop its writes here, only the grain (remove data or raise the bound to use it again)", used>>20, bound>>20)
		s.disk.over.Store(id, struct{}{})
		s.manager.note(id, "erg: grain "+msg)
		s.log.Warn("grain over its disk bound", "grain", id, "used_mb", used>>20, "bound_mb", bound>>20)
		s.manager.stop(ctx, id, "over its disk bound")
	}
}

// restoreOverImage is RestoreOver for a grain on an image: fill writes
// into a new image of the grain's bound (so a restore too big for it
// fails there, and the grain is as it was), which then takes the old
// one's place.
func (s *Service) restoreOverImage(ctx context.Context, id string, uid uint32, fill func(varDir string) error) error {
	g, err := s.Lookup(id)
	if err != nil {
		return err
	}
	dir := s.Dir(id)
	next, nextImg := filepath.Join(dir, "var.restore"), filepath.Join(dir, "var.restore.img")
	clean := func() {
		sandbox.UnmountImage(next)
		os.Remove(nextImg)
		os.RemoveAll(next)
	}
	clean()
	if err := os.Mkdir(next, 0o700); err != nil {
		return err
	}
	if err := sandbox.MountImage(nextImg, next, s.diskBytes(g)); err != nil {
		clean()
		return err
	}
	if err := fill(next); err != nil {
		clean()
		return err
	}
	if err := s.ownVar(next, uid); err != nil {
		clean()
		return err
	}
	if err := s.Stop(ctx, id, "restore"); err != nil {
		clean()
		return err
	}
	if err := sandbox.UnmountImage(next); err != nil {
		clean()
		return err
	}
	if err := sandbox.UnmountImage(s.varDir(id)); err != nil {
		clean()
		return err
	}
	// The old image goes once nothing holds it; the next start mounts
	// the new one.
	if err := os.Rename(nextImg, s.imagePath(id)); err != nil {
		clean()
		return err
	}
	os.RemoveAll(next)
	s.log.Info("grain restored over itself", "grain", id)
	return nil
}
