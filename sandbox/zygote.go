package sandbox

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Zygotes: most of a cold start is spent before the init has a spec —
// creating the namespaces, exec'ing this (large) binary and running the Go
// runtime and every package's init in it, and, with cgroup v1, moving the
// init into its cgroups, which waits for the kernel's cgroup lock. So the
// runner keeps a few inits started ahead ("zygotes"), each already in its
// own namespaces and its own fresh cgroups, with the spec-independent
// setup done (loopback, hostname), waiting for 'G'. Start adopts one:
// renames its cgroups to the sandbox's name, writes the spec's limits and
// sends the spec; the init then mounts the app tree, drops its
// privileges and execs the app exactly as a cold-started one does.
//
// The pool is refilled in the background once the sandbox that took a
// zygote has answered its first dial (its start is over), or after
// refillDelay.
//
// A zygote is used once: it becomes that sandbox and dies with it, so
// nothing carries over between sandboxes. It holds no app data (the trees
// and the output fds arrive with 'G'), and it dies with the node like any
// init (Pdeathsig, and its control socket closing). Runner.Close kills the
// idle ones.
//
// cgroup v2 cannot rename a cgroup, and CgroupPaths are named after the
// sandbox: there adopting moves the init into a new group of the
// sandbox's name (cgroup.rename), before it has forked anything.

// refillDelay bounds how long a refill waits for the sandbox that took a
// zygote to answer its first dial.
const refillDelay = time.Second

type zygotePool struct {
	want int // size to keep; <= 0: none

	mu      sync.Mutex
	ready   []*Sandbox // spawned, maybe still booting
	filling bool
	closed  bool
	fillers sync.WaitGroup
}

func (r *Runner) poolEnabled() bool { return r.pool.want > 0 && r.cg.canRename() }

// startFill starts refilling the pool in the background unless a fill is
// running.
func (r *Runner) startFill() {
	p := &r.pool
	if !r.poolEnabled() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.filling || p.closed || len(p.ready) >= p.want {
		return
	}
	p.filling = true
	p.fillers.Add(1)
	go r.fill()
}

func (r *Runner) fill() {
	p := &r.pool
	defer p.fillers.Done()
	for {
		p.mu.Lock()
		if p.closed || len(p.ready) >= p.want {
			p.filling = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		z, err := r.newZygote()
		if err != nil {
			r.log.Warn("cannot start a zygote; sandboxes start from scratch", "err", err)
			p.mu.Lock()
			p.filling = false
			p.mu.Unlock()
			return
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			z.kill()
			<-z.done
			return // filling stays true: no more fills
		}
		p.ready = append(p.ready, z)
		p.mu.Unlock()
	}
}

// newZygote spawns a zygote and waits until it is ready for a spec.
func (r *Runner) newZygote() (*Sandbox, error) {
	b := make([]byte, 6)
	rand.Read(b)
	// The name carries our pid, so another node's runner sharing the
	// cgroup parent can tell our new, still empty group from a crashed
	// node's (see staleZygote).
	cg, err := r.cg.create(fmt.Sprintf("zygote-%d-%s", os.Getpid(), hex.EncodeToString(b)), nil)
	if err != nil {
		return nil, err
	}
	z := r.newSandbox("", cg)
	if err := z.spawn(); err != nil {
		return nil, errors.Join(err, cg.remove())
	}
	select {
	case <-z.idle:
		return z, nil
	case <-z.done:
	case <-time.After(10 * time.Second):
		z.kill()
		<-z.done
	}
	return nil, fmt.Errorf("zygote init ended before it was ready: %w", z.Err())
}

// claim takes a zygote from the pool and makes it the sandbox name with
// limits, or returns nil if there is none (Start then starts from
// scratch).
func (r *Runner) claim(name string, l Limits) *Sandbox {
	if !r.poolEnabled() {
		return nil
	}
	p := &r.pool
	for {
		p.mu.Lock()
		if len(p.ready) == 0 {
			p.mu.Unlock()
			r.startFill()
			return nil
		}
		z := p.ready[0]
		p.ready = p.ready[1:]
		p.mu.Unlock()
		err := z.adopt(name, l)
		if err == nil {
			// Refill once this start is over, not during it: on a small
			// machine the new zygote's exec and Go runtime start would
			// compete with the app's own start for the CPUs.
			go func() {
				select {
				case <-z.answered:
				case <-z.done:
				case <-time.After(refillDelay):
				}
				r.startFill()
			}()
			return z
		}
		r.log.Warn("zygote unusable; trying another", "err", err)
		z.kill()
		<-z.done
	}
}

// adopt turns a zygote into the sandbox name: its cgroups take the name
// and the limits.
func (s *Sandbox) adopt(name string, l Limits) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reaped {
		return errors.New("zygote ended")
	}
	cg, err := s.cg.rename(name, s.pid)
	s.cg = cg // what the dirs are called now, also after an error
	if err != nil {
		return err
	}
	if err := s.r.cg.setLimits(cg, l); err != nil {
		return err
	}
	s.name = name
	s.log = s.r.log.With("sandbox", name)
	return nil
}

// closePool kills the idle zygotes and stops refilling.
func (r *Runner) closePool() {
	p := &r.pool
	p.mu.Lock()
	p.closed = true
	zs := p.ready
	p.ready = nil
	p.mu.Unlock()
	p.fillers.Wait()
	for _, z := range zs {
		z.kill()
	}
	for _, z := range zs {
		<-z.done
	}
}

// waitPool waits until the pool is full and its zygotes are ready, so that
// a measurement does not share the machine with a refill.
func (r *Runner) waitPool(ctx context.Context) error {
	if !r.poolEnabled() {
		return nil
	}
	for {
		p := &r.pool
		p.mu.Lock()
		done := !p.filling || p.closed
		p.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Microsecond):
		}
	}
}
