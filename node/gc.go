package node

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

// startSpec is runSpec for a grain about to start: it holds the grain's
// package tree until treeReleased, so collectPackages leaves it alone.
func (n *Node) startSpec(id string) (runSpec, error) {
	for {
		s, err := n.runSpec(id)
		if err != nil {
			return s, err
		}
		// An upgrade may have moved the grain to a new tree (and a
		// collection removed the old one) since runSpec looked; holding
		// n.mu while taking the reference closes that gap.
		n.mu.RLock()
		g := n.cache[id]
		same := g != nil && g.tree == s.Root
		if same {
			n.trees.acquire(s.Root)
		}
		n.mu.RUnlock()
		if same {
			return s, nil
		}
	}
}

// treeReleased is called when a grain's sandbox is gone for good.
func (n *Node) treeReleased(tree string) {
	if !n.trees.release(tree) {
		return
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := n.collectPackages(context.Background()); err != nil {
			n.log.Warn("remove unused packages", "err", err)
		}
	}()
}

// collectPackages removes every tree under packages/ that is neither an
// installed app's current version nor in use by a running grain, and any
// leftovers of an install that was cut short.
func (n *Node) collectPackages(ctx context.Context) error {
	n.installMu.Lock()
	defer n.installMu.Unlock()
	return n.collectPackagesLocked(ctx)
}

// collectPackagesLocked is collectPackages with n.installMu held.
func (n *Node) collectPackagesLocked(ctx context.Context) error {
	keep := map[string]bool{}
	rows, err := n.db.QueryContext(ctx, `SELECT tree FROM apps`)
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
	dir := filepath.Join(n.cfg.DataDir, packagesDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		return err
	}
	// Under n.mu no grain can take a reference to a tree the check below
	// misses, since startSpec takes its reference under the same lock, and
	// a tree not kept now cannot become an app's tree again before the
	// removal: that would take an install, and n.installMu is held.
	var remove []string
	n.mu.Lock()
	for _, g := range n.cache {
		keep[g.tree] = true
	}
	for _, e := range entries {
		if p := filepath.Join(dir, e.Name()); !keep[p] && !n.trees.inUse(p) {
			remove = append(remove, p)
		}
	}
	n.mu.Unlock()
	for _, p := range remove {
		if err := apppkg.RemoveTree(p); err != nil {
			return fmt.Errorf("remove unused package %s: %w", filepath.Base(p), err)
		}
		n.log.Info("unused package removed", "package", filepath.Base(p))
	}
	return nil
}
