package grains

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"erg/forward"
	"erg/sandbox"
)

// grainLogSize bounds each grain's kept output.
const grainLogSize = 256 << 10

// grainStartTimeout bounds how long a grain may take from start to
// accepting its first connection. Real apps are slow to start: Etherpad
// 1.8 runs `npm ls` to find its plugins and loads some 1,500 modules,
// 20–60 s on a busy two-core machine, so 30 s was not enough.
const grainStartTimeout = 2 * time.Minute

// grainStopGrace is how long a grain gets to exit after SIGTERM.
const grainStopGrace = 5 * time.Second

// RunSpec is what the manager needs to start one grain.
type RunSpec struct {
	sandbox.Spec
	Port int
}

// grainHost is what the grain manager asks of the registry: how to run a
// grain, and what to record of its runs. Service implements it.
type grainHost interface {
	// startSpec describes how to run a grain; it is asked at every start
	// so an upgraded app takes effect on the next start.
	startSpec(id string) (RunSpec, error)
	// touchGrain records that a grain ran, for its "last used" time.
	touchGrain(id string, t time.Time)
	// bridge serves a started grain's bridge, if it has one (bridge.go).
	bridge(id string, sb *sandbox.Sandbox)
	// treeReleased is told the root of every grain sandbox whose start
	// was asked of startSpec once that sandbox is gone (or never
	// started).
	treeReleased(root string)
}

// manager starts grains on demand, shares one start among concurrent
// first requests, and stops grains that have been idle.
type manager struct {
	runner *sandbox.Runner
	log    *slog.Logger
	idle   time.Duration
	host   grainHost

	ctx    context.Context // ends when the node shuts down
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	entries map[string]*grainEntry

	starts atomic.Int64 // sandboxes started, for tests and status
}

type grainEntry struct {
	log *ringLog

	mu         sync.Mutex
	run        *grainRun // nil when not running
	starting   *startOp  // non-nil while a start is under way
	stopping   chan struct{}
	active     int // open requests and websockets
	lastActive time.Time
}

type startOp struct {
	done chan struct{}
	err  error
}

type grainRun struct {
	sb        *sandbox.Sandbox
	root      string
	transport *forward.Pool
}

func (m *manager) endRun(root string) { m.host.treeReleased(root) }

func newManager(runner *sandbox.Runner, idle time.Duration, log *slog.Logger, host grainHost) *manager {
	ctx, cancel := context.WithCancel(context.Background())
	m := &manager{
		runner: runner, log: log, idle: idle, host: host,
		ctx: ctx, cancel: cancel, entries: map[string]*grainEntry{},
	}
	m.wg.Add(1)
	go m.reapLoop()
	return m
}

func (m *manager) entry(id string) *grainEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	e := m.entries[id]
	if e == nil {
		e = &grainEntry{log: newRingLog(grainLogSize)}
		m.entries[id] = e
	}
	return e
}

// acquire returns a transport into the running grain, starting it first if
// needed. release must be called once the request is over.
func (m *manager) acquire(ctx context.Context, id string) (http.RoundTripper, func(), error) {
	e := m.entry(id)
	e.mu.Lock()
	for {
		if e.run != nil {
			run := e.run
			e.active++
			e.mu.Unlock()
			var once sync.Once
			release := func() {
				once.Do(func() {
					e.mu.Lock()
					e.active--
					e.lastActive = time.Now()
					e.mu.Unlock()
				})
			}
			return run.transport, release, nil
		}
		if op := e.starting; op != nil {
			e.mu.Unlock()
			select {
			case <-op.done:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			if op.err != nil {
				return nil, nil, op.err
			}
			e.mu.Lock()
			continue
		}
		if ch := e.stopping; ch != nil {
			e.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			}
			e.mu.Lock()
			continue
		}
		if m.ctx.Err() != nil {
			e.mu.Unlock()
			return nil, nil, errors.New("the node is shutting down")
		}
		op := &startOp{done: make(chan struct{})}
		e.starting = op
		e.mu.Unlock()
		// The start belongs to the node, not to the request that happened
		// to trigger it: other requests are waiting for it too.
		run, err := m.start(id, e.log)
		e.mu.Lock()
		e.starting = nil
		if err == nil {
			e.run = run
			e.lastActive = time.Now()
			m.wg.Add(1)
			go m.watch(id, e, run)
		}
		op.err = err
		close(op.done)
		if err != nil {
			e.mu.Unlock()
			return nil, nil, err
		}
	}
}

func (m *manager) start(id string, out *ringLog) (*grainRun, error) {
	ctx, cancel := context.WithTimeout(m.ctx, grainStartTimeout)
	defer cancel()
	spec, err := m.host.startSpec(id)
	if err != nil {
		return nil, err
	}
	spec.Stdout, spec.Stderr = out, out
	t0 := time.Now()
	sb, err := m.runner.Start(ctx, spec.Spec)
	if err != nil {
		m.endRun(spec.Root)
		if b := out.Bytes(); len(b) > 0 {
			m.log.Warn("grain failed to start", "grain", id, "err", err, "output", tail(b, 512))
		}
		return nil, fmt.Errorf("start grain %s: %w", id, err)
	}
	if err := waitListening(ctx, sb, spec.Port); err != nil {
		stopCtx, cancel := context.WithTimeout(context.Background(), grainStopGrace)
		sb.Stop(stopCtx)
		cancel()
		m.endRun(spec.Root)
		// The app's own last words say why; they go to the node's log
		// only, since the error reaches whoever opened the grain.
		m.log.Warn("grain failed to start", "grain", id, "err", err, "output", tail(out.Bytes(), 512))
		return nil, fmt.Errorf("start grain %s: %w", id, err)
	}
	m.starts.Add(1)
	m.log.Info("grain started", "grain", id, "took", time.Since(t0).Round(time.Microsecond), "pid", sb.Pid())
	m.host.touchGrain(id, time.Now())
	m.host.bridge(id, sb)
	port := spec.Port
	return &grainRun{
		sb:   sb,
		root: spec.Root,
		transport: forward.New(func(ctx context.Context) (net.Conn, error) {
			return sb.Dial(ctx, port)
		}),
	}, nil
}

// waitListening polls until the app accepts a connection on its port, or
// the sandbox exits first.
func waitListening(ctx context.Context, sb *sandbox.Sandbox, port int) error {
	delay := 200 * time.Microsecond
	for {
		c, err := sb.Dial(ctx, port)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-sb.Done():
			if err := sb.Err(); err != nil {
				return fmt.Errorf("app exited before listening on port %d: %w", port, err)
			}
			return fmt.Errorf("app exited before listening on port %d", port)
		case <-ctx.Done():
			return fmt.Errorf("app did not listen on port %d in time: %w", port, err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 20*time.Millisecond)
	}
}

// watch notices a grain that exits on its own (crash, out of memory) so the
// next request starts it again.
func (m *manager) watch(id string, e *grainEntry, run *grainRun) {
	defer m.wg.Done()
	<-run.sb.Done()
	e.mu.Lock()
	crashed := e.run == run
	if crashed {
		e.run = nil
	}
	e.mu.Unlock()
	run.transport.Close()
	if crashed {
		err := run.sb.Err()
		m.log.Warn("grain exited", "grain", id, "err", err)
		fmt.Fprintf(e.log, "erg: grain exited: %v\n", errOrClean(err))
		ctx, cancel := context.WithTimeout(context.Background(), grainStopGrace)
		run.sb.Stop(ctx) // frees its cgroup
		cancel()
		m.endRun(run.root)
	}
}

func errOrClean(err error) any {
	if err == nil {
		return "exit status 0"
	}
	return err
}

func (m *manager) reapLoop() {
	defer m.wg.Done()
	tick := min(max(m.idle/10, 50*time.Millisecond), 5*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-t.C:
			m.mu.Lock()
			for id, e := range m.entries {
				e.mu.Lock()
				if e.run != nil && e.active == 0 && now.Sub(e.lastActive) >= m.idle {
					m.stopLocked(id, e, "idle")
				}
				e.mu.Unlock()
			}
			m.mu.Unlock()
		}
	}
}

// stopLocked stops e's sandbox in the background; e.mu must be held. A
// request arriving meanwhile waits for the stop and then starts afresh, so
// two sandboxes never share one /var.
func (m *manager) stopLocked(id string, e *grainEntry, why string) chan struct{} {
	run := e.run
	e.run = nil
	done := make(chan struct{})
	e.stopping = done
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), grainStopGrace)
		err := run.sb.Stop(ctx)
		cancel()
		run.transport.Close()
		m.endRun(run.root)
		m.host.touchGrain(id, time.Now())
		if err != nil {
			m.log.Warn("grain stop", "grain", id, "why", why, "err", err)
		} else {
			m.log.Info("grain stopped", "grain", id, "why", why)
		}
		e.mu.Lock()
		e.stopping = nil
		e.mu.Unlock()
		close(done)
	}()
	return done
}

// stop stops one grain if it runs and waits until it has.
func (m *manager) stop(ctx context.Context, id string, why string) error {
	e := m.entry(id)
	for {
		e.mu.Lock()
		switch {
		case e.run != nil:
			done := m.stopLocked(id, e, why)
			e.mu.Unlock()
			<-done
			return nil
		case e.starting != nil:
			op := e.starting
			e.mu.Unlock()
			select {
			case <-op.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		case e.stopping != nil:
			ch := e.stopping
			e.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			e.mu.Unlock()
			return nil
		}
	}
}

// forget drops a removed grain's state; it must be stopped already.
func (m *manager) forget(id string) {
	m.mu.Lock()
	delete(m.entries, id)
	m.mu.Unlock()
}

// current returns a grain's running sandbox, or nil, without creating
// state for a grain never seen.
func (m *manager) current(id string) *grainRun {
	m.mu.Lock()
	e := m.entries[id]
	m.mu.Unlock()
	if e == nil {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.run
}

func (m *manager) running(id string) bool { return m.current(id) != nil }

func (m *manager) runningCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.entries {
		e.mu.Lock()
		if e.run != nil {
			n++
		}
		e.mu.Unlock()
	}
	return n
}

// sandboxOf returns the running sandbox of a grain, for tests and benchmarks.
func (m *manager) sandboxOf(id string) *sandbox.Sandbox {
	if run := m.current(id); run != nil {
		return run.sb
	}
	return nil
}

// note adds a line of the node's own to a grain's log.
func (m *manager) note(id, line string) {
	fmt.Fprintln(m.entry(id).log, line)
}

func (m *manager) logOf(id string) []byte {
	return m.entry(id).log.Bytes()
}

// close stops every grain and waits for them.
func (m *manager) close() {
	m.cancel()
	m.mu.Lock()
	ids := make([]string, 0, len(m.entries))
	for id := range m.entries {
		ids = append(ids, id)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*grainStopGrace)
			defer cancel()
			m.stop(ctx, id, "node shutdown")
		}()
	}
	wg.Wait()
	m.wg.Wait()
}

// tail is the end of b, at most n bytes from a line start, for a log line.
func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(bytes.TrimSpace(b))
}
