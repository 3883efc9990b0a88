package grains

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"erg/apppkg"
)

// treeRefs counts the running (or starting) grains on each package tree. An
// upgraded app's old tree stays on disk while a grain still runs on it, and
// goes when the last such grain stops.
type treeRefs struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *treeRefs) acquire(tree string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[tree]++
}

// release drops one use of tree and reports whether it was the last.
func (r *treeRefs) release(tree string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n[tree]--
	if r.n[tree] > 0 {
		return false
	}
	delete(r.n, tree)
	return true
}

func (r *treeRefs) inUse(tree string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[tree] > 0
}

// startSpec is RunSpec for a grain about to start: it holds the grain's
// package tree until treeReleased, so package GC leaves it alone.
func (s *Service) startSpec(id string) (RunSpec, error) {
	uid, err := s.grainUID(context.Background(), id)
	if err != nil {
		return RunSpec{}, err
	}
	s.mu.Lock()
	g := s.cache[id]
	if g != nil {
		g.uid = uid
	}
	s.mu.Unlock()
	if g != nil {
		if err := s.mountVar(g); err != nil {
			return RunSpec{}, err
		}
	}
	for {
		rs, err := s.RunSpec(id)
		if err != nil {
			return rs, err
		}
		// An upgrade may have moved the grain to a new tree (and a
		// collection removed the old one) since RunSpec looked; holding
		// s.mu while taking the reference closes that gap.
		s.mu.RLock()
		g := s.cache[id]
		same := g != nil && g.tree == rs.Root
		if same {
			s.trees.acquire(rs.Root)
		}
		s.mu.RUnlock()
		if same {
			return rs, nil
		}
	}
}

// treeReleased is called when a grain's sandbox is gone for good.
func (s *Service) treeReleased(tree string) {
	if !s.trees.release(tree) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		if err := s.CollectPackages(context.Background()); err != nil {
			s.log.Warn("remove unused packages", "err", err)
		}
	}()
}

// CollectPackages removes every tree under the packages dir that is
// neither an installed app's current version nor in use by a running
// grain, and any leftovers of an install that was cut short.
func (s *Service) CollectPackages(ctx context.Context) error {
	s.cfg.InstallLock.Lock()
	defer s.cfg.InstallLock.Unlock()
	return s.CollectPackagesLocked(ctx)
}

// CollectPackagesLocked is CollectPackages with the install lock held.
func (s *Service) CollectPackagesLocked(ctx context.Context) error {
	keep := map[string]bool{}
	rows, err := s.db.QueryContext(ctx, `SELECT tree FROM apps`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return err
		}
		keep[t] = true
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	dir := s.cfg.PackagesDir
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	// Under s.mu no grain can take a reference to a tree the check below
	// misses, since startSpec takes its reference under the same lock, and
	// a tree not kept now cannot become an app's tree again before the
	// removal: that would take an install, and the install lock is held.
	var remove []string
	s.mu.Lock()
	for _, g := range s.cache {
		keep[g.tree] = true
	}
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); !keep[p] && !s.trees.inUse(p) {
			remove = append(remove, p)
		}
	}
	s.mu.Unlock()
	for _, p := range remove {
		if err := apppkg.RemoveTree(p); err != nil {
			return fmt.Errorf("remove unused package %s: %w", filepath.Base(p), err)
		}
		s.log.Info("unused package removed", "package", filepath.Base(p))
	}
	return nil
}
