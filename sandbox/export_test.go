package sandbox

import "context"

// Hooks for the external tests of the zygote pool.

// WaitPool waits until r's zygote pool is refilled.
func WaitPool(ctx context.Context, r *Runner) error { return r.waitPool(ctx) }

// ZygotePids lists the host pids of r's idle zygotes.
func ZygotePids(r *Runner) []int {
	r.pool.mu.Lock()
	defer r.pool.mu.Unlock()
	var pids []int
	for _, z := range r.pool.ready {
		pids = append(pids, z.Pid())
	}
	return pids
}

// ZygoteCgroups lists the cgroup dirs of r's idle zygotes.
func ZygoteCgroups(r *Runner) []string {
	r.pool.mu.Lock()
	defer r.pool.mu.Unlock()
	var dirs []string
	for _, z := range r.pool.ready {
		dirs = append(dirs, z.CgroupPaths()...)
	}
	return dirs
}
