package grains

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"erg"
	"erg/sandbox"
)

// Resource use: what each grain uses, read from its sandbox's cgroup
// (sandbox.Usage) every usagePeriod while it runs, and when someone asks
// for one grain's. A list of grains shows the periodic read's figures,
// reading only a run the sampler has not seen yet: live reads of every
// running grain were nearly all of a list's time (BenchmarkGrainsList).
// The periodic read is what a stopped grain shows (its last run's CPU
// time and peak, as last read: the cgroup is gone once it stops), and
// what the node warns from, once per run, in its log and the grain's: a
// grain near its memory or process limit, whose processes the kernel
// killed at the memory limit, or which the memory limit stopped. The
// figures live in memory only: a grain not run since the node started
// shows none.

// usagePeriod is how often running grains' usage is read.
const usagePeriod = 2 * time.Second

// nearLimit is the share of a limit past which a grain is warned about.
const nearLimit = 0.9

// diskAge is how long a grain's /var size is reused before it is walked
// again: listing grains must not walk every file every time.
const diskAge = 30 * time.Second

// usageState is the service's record of its grains' usage.
type usageState struct {
	stop     chan struct{} // closed by Close (which may be called again)
	stopOnce sync.Once
	done     chan struct{} // closed when the sampler has ended

	mu   sync.Mutex
	runs map[string]*usageRun // by grain id
	disk map[string]diskSize
}

type diskSize struct {
	bytes    int64
	enforced bool
	at       time.Time
}

// usageRun is what is known of a grain's current or last run.
type usageRun struct {
	sb        *sandbox.Sandbox
	last      sandbox.Usage
	stoppedBy string          // why a limit ended the run, "" if none did
	warned    map[string]bool // kinds of warning logged for this run
}

// startUsage starts the sampler; Close stops it.
func (s *Service) startUsage() {
	s.use.stop, s.use.done = make(chan struct{}), make(chan struct{})
	s.use.runs, s.use.disk = map[string]*usageRun{}, map[string]diskSize{}
	go func() {
		defer close(s.use.done)
		t := time.NewTicker(usagePeriod)
		defer t.Stop()
		for {
			select {
			case <-s.use.stop:
				return
			case <-t.C:
				s.sampleAll()
			}
		}
	}()
}

func (s *Service) stopUsage() {
	s.use.stopOnce.Do(func() { close(s.use.stop) })
	<-s.use.done
}

// sampleAll reads every running grain's usage and notices runs that
// ended, logging the warnings each brings for the first time.
func (s *Service) sampleAll() {
	for _, id := range s.ids() {
		s.sample(id)
	}
}

// recorded is grain id's record as the sampler left it, if that is of the
// run the grain is in now (or, stopped, of its last run, whose end the
// sampler noticed); otherwise it brings the record up to date first: a
// run started since would have none, one ended since be shown running.
func (s *Service) recorded(id string) *usageRun {
	sb := s.manager.sandboxOf(id)
	s.use.mu.Lock()
	run := s.use.runs[id]
	s.use.mu.Unlock()
	if run != nil && run.sb == sb {
		return run
	}
	return s.sample(id)
}

// sample brings grain id's record up to date and returns it (nil for a
// grain not run since the node started).
func (s *Service) sample(id string) *usageRun {
	sb := s.manager.sandboxOf(id)
	s.use.mu.Lock()
	run := s.use.runs[id]
	gone := run != nil && run.sb != sb
	s.use.mu.Unlock()
	if gone {
		// The run seen last has ended: did a limit end it?
		s.ended(id, run)
	}
	if sb == nil {
		return run
	}
	u, err := sb.Usage()
	if err != nil {
		return run // it is stopping; its last figures stand
	}
	s.use.mu.Lock()
	if run == nil || run.sb != sb {
		run = &usageRun{sb: sb, warned: map[string]bool{}}
		s.use.runs[id] = run
	}
	// On v1 CPU time is summed over the live processes (sandbox.Usage):
	// read as the run ends, it falls. A run's time only grows.
	u.CPU = max(u.CPU, run.last.CPU)
	u.MemoryPeakBytes = max(u.MemoryPeakBytes, run.last.MemoryPeakBytes)
	run.last = u
	s.use.mu.Unlock()
	for _, w := range warnings(u, true) {
		s.warnOnce(id, run, w)
	}
	return run
}

// ended records, once, that run's sandbox is gone, and why if a limit
// was the cause.
func (s *Service) ended(id string, run *usageRun) {
	s.use.mu.Lock()
	sb := run.sb
	run.sb = nil
	s.use.mu.Unlock()
	if sb == nil {
		return
	}
	select {
	case <-sb.Done():
	default:
		return // replaced while still stopping; nothing to learn yet
	}
	var ee *sandbox.ExitError
	if errors.As(sb.Err(), &ee) && ee.OOM {
		s.use.mu.Lock()
		run.stoppedBy = "stopped by its memory limit (out of memory)"
		s.use.mu.Unlock()
		s.warnOnce(id, run, warning{"stopped", run.stoppedBy})
	}
}

// warnOnce logs w for grain id unless this run logged its kind before.
func (s *Service) warnOnce(id string, run *usageRun, w warning) {
	s.use.mu.Lock()
	seen := run.warned[w.kind]
	run.warned[w.kind] = true
	s.use.mu.Unlock()
	if seen {
		return
	}
	s.log.Warn("grain at a limit", "grain", id, "warning", w.text)
	fmt.Fprintf(s.manager.entry(id).log, "erg: %s\n", w.text)
}

type warning struct{ kind, text string }

// warnings are what u says of a grain near or at its limits; running says
// whether u is of a run still going (the near-limit ones only hold then).
func warnings(u sandbox.Usage, running bool) []warning {
	var out []warning
	if running && u.MemoryLimitBytes > 0 && float64(u.MemoryBytes) > nearLimit*float64(u.MemoryLimitBytes) {
		out = append(out, warning{"memory", fmt.Sprintf("memory at %.0f%% of its limit (%d of %d MiB)",
			100*float64(u.MemoryBytes)/float64(u.MemoryLimitBytes), u.MemoryBytes>>20, u.MemoryLimitBytes>>20)})
	}
	if running && u.PidsLimit > 0 && float64(u.Pids) > nearLimit*float64(u.PidsLimit) {
		out = append(out, warning{"pids", fmt.Sprintf("%d processes and threads, near its limit of %d", u.Pids, u.PidsLimit)})
	}
	if u.OOMKills > 0 {
		out = append(out, warning{"oom", fmt.Sprintf("the kernel killed %d of its processes at its memory limit", u.OOMKills)})
	}
	if u.PidsLimitHits > 0 {
		out = append(out, warning{"pidsmax", fmt.Sprintf("%d new processes or threads refused at its limit of %d", u.PidsLimitHits, u.PidsLimit)})
	}
	return out
}

// usageOf is grain g's usage and limits, from its record (recorded): at
// most usagePeriod old where it runs.
func (s *Service) usageOf(g *Info) *erg.GrainUsage {
	rs, err := s.RunSpec(g.id)
	if err != nil {
		return nil
	}
	out := &erg.GrainUsage{
		MemoryLimitBytes: rs.Limits.MemoryBytes,
		ProcessLimit:     rs.Limits.Pids,
		CPUPercent:       rs.Limits.CPUPercent,
	}
	out.DiskBytes, out.DiskEnforced = s.varUse(g.id)
	out.DiskLimitBytes = s.diskBytes(g)
	s.mu.RLock()
	if g.diskMB != nil {
		out.DiskMBSet = *g.diskMB
	}
	if g.cpuPercent != nil {
		out.CPUPercentSet = *g.cpuPercent
	}
	s.mu.RUnlock()
	if out.DiskLimitBytes > 0 && float64(out.DiskBytes) > nearLimit*float64(out.DiskLimitBytes) {
		out.Warnings = append(out.Warnings, fmt.Sprintf("disk at %.0f%% of its limit (%d of %d MiB)",
			100*float64(out.DiskBytes)/float64(out.DiskLimitBytes), out.DiskBytes>>20, out.DiskLimitBytes>>20))
	}
	run := s.recorded(g.id)
	if run == nil {
		return out
	}
	s.use.mu.Lock()
	u, running, stoppedBy := run.last, run.sb != nil, run.stoppedBy
	s.use.mu.Unlock()
	out.Measured = true
	out.CPUSeconds = u.CPU.Seconds()
	out.MemoryPeakBytes = u.MemoryPeakBytes
	if running {
		out.MemoryBytes, out.Processes = u.MemoryBytes, u.Pids
	}
	for _, w := range warnings(u, running) {
		out.Warnings = append(out.Warnings, w.text)
	}
	if stoppedBy != "" {
		out.Warnings = append(out.Warnings, stoppedBy)
	}
	return out
}

// WithUsage adds to out, one of this node's grains, its usage read now
// if who owns it; a friend's grain is returned as it is.
func (s *Service) WithUsage(out erg.Grain, who erg.User) erg.Grain {
	g, err := s.Lookup(out.ID)
	if err != nil {
		return out
	}
	if g.OwnerID() == who.ID {
		s.sample(g.id)
	}
	return s.withUsage(out, g, who)
}

// withUsage adds grain g's usage to out, if who owns it.
func (s *Service) withUsage(out erg.Grain, g *Info, who erg.User) erg.Grain {
	if g.OwnerID() == who.ID {
		out.Usage = s.usageOf(g)
	}
	return out
}

// varUse is what grain id keeps in /var and whether the kernel bounds it
// (disk.go), measured at most every diskAge: a /var the node measures is
// walked.
func (s *Service) varUse(id string) (used int64, enforced bool) {
	s.use.mu.Lock()
	d, ok := s.use.disk[id]
	s.use.mu.Unlock()
	if ok && time.Since(d.at) < diskAge {
		return d.bytes, d.enforced
	}
	// On an error, used is what could be read of it.
	used, _, enforced, _ = s.DiskUse(id)
	s.use.mu.Lock()
	s.use.disk[id] = diskSize{bytes: used, enforced: enforced, at: time.Now()}
	s.use.mu.Unlock()
	return used, enforced
}

// forgetUsage drops a removed grain's record.
func (s *Service) forgetUsage(id string) {
	s.use.mu.Lock()
	delete(s.use.runs, id)
	delete(s.use.disk, id)
	s.use.mu.Unlock()
}

// Usage is the usage and limits of one of who's grains (or, for the
// node's owner, anyone's), read now.
func (s *Service) Usage(ctx context.Context, who erg.User, id string) (*erg.GrainUsage, error) {
	g, err := s.Lookup(id)
	if err != nil {
		return nil, err
	}
	if g.OwnerID() != who.ID && !who.Owner {
		return nil, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
	}
	s.sample(id)
	return s.usageOf(g), ctx.Err()
}

// ids lists every grain's id, for work over them all done outside the
// lock.
func (s *Service) ids() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.cache))
	for id := range s.cache {
		ids = append(ids, id)
	}
	return ids
}
