package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ErrStopped is what Err returns for a sandbox that ended because Stop was
// called.
var ErrStopped = errors.New("sandbox stopped")

// ExitError says how a sandboxed app ended other than by a clean exit.
type ExitError struct {
	Code   int            // exit code, or -1 if killed by a signal
	Signal syscall.Signal // the signal that killed it, or 0
	OOM    bool           // the kernel killed it at the sandbox's memory limit
}

func (e *ExitError) Error() string {
	if e.Signal == 0 {
		return fmt.Sprintf("app exited with code %d", e.Code)
	}
	why := e.Signal.String()
	if e.OOM {
		why = "out of memory"
	}
	return fmt.Sprintf("app killed by signal %d (%s)", int(e.Signal), why)
}

// Sandbox is one running sandbox.
type Sandbox struct {
	r    *Runner
	name string       // "" while a zygote; then set under mu, before Start returns
	log  *slog.Logger // likewise
	cg   *cgroup      // likewise (renamed when adopted)
	cmd  *exec.Cmd
	ctrl *net.UnixConn
	pid  int // the init, in the host's pid namespace

	idle       chan struct{} // closed at the init's 'I'
	answered   chan struct{} // closed when a dial first succeeds
	answerOnce sync.Once
	started    chan initMsg   // first 'R' or 'E'
	copies     sync.WaitGroup // copying the app's output to Spec.Stdout, Stderr
	initErr    tail           // the init's own stderr
	readerDone chan struct{}
	done       chan struct{}

	mu       sync.Mutex
	nextID   uint32
	pending  map[uint32]chan dialResult
	exit     *unix.WaitStatus // from the init's 'X'
	protoErr error            // the init broke the protocol; it was killed
	stopping bool
	reaped   bool  // the init is gone: a zygote can no longer be adopted
	err      error // set before done is closed
	cleanErr error
	bridge   *Bridge // from the init's 'B' (bridge.go)

	stopOnce sync.Once

	tr traceState // Spec.Trace's supervisor (trace.go)
}

type dialResult struct {
	conn net.Conn
	err  error
}

// Pid is the host pid of the sandbox's init.
func (s *Sandbox) Pid() int { return s.pid }

// CgroupPaths are the cgroup dirs created for the sandbox; they are removed
// by the time Done is closed.
func (s *Sandbox) CgroupPaths() []string { return append([]string(nil), s.cgroup().dirs...) }

// MemoryUsage is the memory currently charged to the sandbox's cgroup.
func (s *Sandbox) MemoryUsage() (int64, error) { return s.cgroup().memoryUsage() }

func (s *Sandbox) cgroup() *cgroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cg
}

// Done is closed when the sandbox (its init) has exited and its cgroups
// are removed.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Err says, after Done, why the sandbox ended: nil for a clean exit 0 of
// the app, ErrStopped if Stop ended it, an *ExitError for the app's own
// failure, or another error if the init failed.
func (s *Sandbox) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Stop sends SIGTERM to the app and waits for it until ctx is done, then
// kills everything in the sandbox. It returns once the sandbox is gone and
// its cgroups are removed. It may be called many times, concurrently.
func (s *Sandbox) Stop(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		s.stopping = true
		s.mu.Unlock()
		select {
		case <-s.done:
			return
		default:
		}
		if ctx.Err() == nil {
			s.cmd.Process.Signal(syscall.SIGTERM) // the init forwards it
			select {
			case <-s.done:
				return
			case <-ctx.Done():
			}
		}
		s.kill()
	})
	<-s.done
	return s.cleanErr
}

// kill ends the sandbox at once. Killing the init is enough — the kernel
// then kills the rest of its pid namespace — but the cgroup is killed
// first where it can be, so nothing runs on while the init dies.
func (s *Sandbox) kill() {
	s.cgroup().kill()
	if s.cmd != nil {
		s.cmd.Process.Signal(syscall.SIGKILL)
	}
}

// Dial connects to 127.0.0.1:port inside the sandbox's network namespace.
// The init makes the connection and passes the socket back, so the host
// never enters the sandbox and nothing is copied.
func (s *Sandbox) Dial(ctx context.Context, port int) (net.Conn, error) {
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("sandbox %s: bad port %d", s.name, port)
	}
	ch := make(chan dialResult, 1)
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.pending[id] = ch
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	if _, err := s.ctrl.Write(dialMsg(id, uint16(port))); err != nil {
		return nil, fmt.Errorf("sandbox %s: dial port %d: %w", s.name, port, errOr(s.Err(), err))
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, fmt.Errorf("sandbox %s: dial 127.0.0.1:%d: %w", s.name, port, r.err)
		}
		s.answerOnce.Do(func() { close(s.answered) })
		return r.conn, nil
	case <-s.readerDone:
		return nil, fmt.Errorf("sandbox %s: dial port %d: sandbox exited", s.name, port)
	case <-ctx.Done():
		return nil, fmt.Errorf("sandbox %s: dial port %d: %w", s.name, port, ctx.Err())
	}
}

func errOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// readLoop reads the init's messages until it exits. Anything malformed
// kills the sandbox: a well-behaved init never sends it.
func (s *Sandbox) readLoop() {
	defer close(s.readerDone)
	buf := make([]byte, maxCtrl)
	oob := make([]byte, unix.CmsgSpace(4*4)) // room to see (and close) a few stray fds
	for {
		n, oobn, flags, _, err := s.ctrl.ReadMsgUnix(buf, oob)
		if err != nil || n == 0 && oobn == 0 {
			return
		}
		fds, perr := parseRights(oob[:oobn])
		if perr == nil && flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
			perr = errors.New("oversized message")
		}
		if perr == nil {
			perr = s.handle(buf[:n], fds)
		}
		if perr != nil {
			closeAll(fds)
			s.mu.Lock()
			if s.protoErr == nil {
				s.protoErr = perr
			}
			log := s.log
			s.mu.Unlock()
			log.Warn("sandbox init broke the control protocol; killing the sandbox", "err", perr)
			s.kill()
			return
		}
	}
}

// handle acts on one message; on error the caller closes fds.
func (s *Sandbox) handle(b []byte, fds []int) error {
	if len(b) == 1 && b[0] == msgTrace {
		return s.startTracer(fds)
	}
	if len(b) == 1 && b[0] == msgBridge {
		return s.takeBridge(fds) // bridge.go
	}
	m, err := parseInitMsg(b)
	if err != nil {
		return err
	}
	if m.kind != msgDial && len(fds) > 0 {
		return fmt.Errorf("message %q carried %d fds", m.kind, len(fds))
	}
	switch m.kind {
	case msgIdle:
		select {
		case <-s.idle:
			return errors.New("repeated idle message")
		default:
			close(s.idle)
		}
	case msgReady, msgError:
		select {
		case s.started <- m:
		default:
			return fmt.Errorf("repeated start message %q", m.kind)
		}
	case msgExit:
		ws := unix.WaitStatus(m.val)
		s.mu.Lock()
		s.exit = &ws
		s.mu.Unlock()
	case msgDial:
		s.mu.Lock()
		ch, ok := s.pending[m.id]
		issued := m.id < s.nextID
		s.mu.Unlock()
		if !issued {
			return fmt.Errorf("dial reply for request %d never made", m.id)
		}
		var r dialResult
		if m.errno != 0 {
			if len(fds) != 0 {
				return errors.New("failed dial reply carried fds")
			}
			r.err = syscall.Errno(m.errno)
		} else {
			if len(fds) != 1 {
				return fmt.Errorf("dial reply carried %d fds, want 1", len(fds))
			}
			c, err := tcpConn(fds[0])
			if err != nil {
				return err
			}
			r.conn = c
		}
		if !ok { // the dialer gave up
			if r.conn != nil {
				r.conn.Close()
			}
			return nil
		}
		ch <- r
	}
	return nil
}

func parseRights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	var bad error
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			bad = fmt.Errorf("unexpected control message level %d type %d", m.Header.Level, m.Header.Type)
			continue
		}
		fds = append(fds, f...)
	}
	if bad != nil {
		closeAll(fds)
		return nil, bad
	}
	return fds, nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// tcpConn turns a passed fd into a net.Conn after checking it is what the
// init claims: a connected IPv4 stream socket. It takes ownership of fd.
func tcpConn(fd int) (net.Conn, error) {
	typ, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	dom, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err := errors.Join(err1, err2); err != nil || typ != unix.SOCK_STREAM || dom != unix.AF_INET {
		unix.Close(fd)
		return nil, fmt.Errorf("passed fd is not a TCP socket (type %d, domain %d, %v)", typ, dom, err)
	}
	unix.CloseOnExec(fd)
	f := os.NewFile(uintptr(fd), "sandbox-conn")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("passed fd: %w", err)
	}
	if _, ok := c.(*net.TCPConn); !ok {
		c.Close()
		return nil, errors.New("passed fd is not a TCP connection")
	}
	return c, nil
}

// wait reaps the init, tears down the cgroups and records why it ended.
func (s *Sandbox) wait() {
	waitErr := s.cmd.Wait()
	// The init's end of the control socket is closed now: the reader
	// drains what it sent (its exit report) and stops.
	select {
	case <-s.readerDone:
	case <-time.After(time.Second):
	}
	s.ctrl.Close()
	<-s.readerDone
	s.endTrace()
	s.mu.Lock()
	s.reaped = true
	cg, name := s.cg, s.name
	s.mu.Unlock()
	oom := cg.oomKills() > 0
	s.cleanErr = cg.remove()
	s.copies.Wait()
	s.r.forget(name)

	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.protoErr != nil:
		s.err = fmt.Errorf("sandbox %s killed: its init broke the control protocol: %w", s.name, s.protoErr)
	case s.stopping && (s.exit == nil || stoppedBySignal(*s.exit)):
		s.err = ErrStopped
	case s.exit != nil:
		s.err = exitError(*s.exit, oom)
	default:
		s.err = fmt.Errorf("sandbox %s init ended: %w%s", s.name, waitErr, s.initErr.said())
		if ee, ok := waitErr.(*exec.ExitError); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && oom {
				s.err = fmt.Errorf("sandbox %s init killed by signal %d (out of memory)", s.name, int(ws.Signal()))
			}
		}
	}
	close(s.done)
}

func stoppedBySignal(ws unix.WaitStatus) bool {
	return ws.Signaled() && (ws.Signal() == unix.SIGTERM || ws.Signal() == unix.SIGKILL) || ws.Exited()
}

func exitError(ws unix.WaitStatus, oom bool) error {
	switch {
	case ws.Exited() && ws.ExitStatus() == 0:
		return nil
	case ws.Exited():
		return &ExitError{Code: ws.ExitStatus()}
	case ws.Signaled():
		return &ExitError{Code: -1, Signal: ws.Signal(), OOM: oom && ws.Signal() == unix.SIGKILL}
	}
	return fmt.Errorf("app ended with wait status %#x", uint32(ws))
}

// tail keeps the last bytes written to it: enough of a dying init's
// stderr to say why.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 2048

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(p), nil
}

// said is what was written, as ": ..." on one line, or "".
func (t *tail) said() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := strings.Join(strings.Fields(string(t.buf)), " ")
	if s == "" {
		return ""
	}
	return ": " + s
}
