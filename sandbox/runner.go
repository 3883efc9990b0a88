package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maybeInitCalled guards against re-executing a binary that would not
// turn into an init: it would run the host program again, recursively.
var maybeInitCalled atomic.Bool

// DefaultSandboxUID is the host uid and gid that root inside a sandbox is
// when the node runs as root and its Spec names no UID of its own.
const DefaultSandboxUID = 60001

// The default range of host uids a root node gives its grains one each
// from (Config.UIDBase, UIDCount). It lies above the ranges useradd hands
// out in /etc/subuid (100000 up to 600100000) and below 2^31, which some
// tools still treat as signed.
const (
	DefaultUIDBase  = 1_500_000_000
	DefaultUIDCount = 1_000_000
)

// Limits bound what a sandbox may use. Zero fields take the defaults.
type Limits struct {
	MemoryBytes int64  // 0: 256 MiB
	Pids        int    // 0: 256 (Go init threads count too)
	NoFile      uint64 // 0: 4096
	TmpBytes    int64  // 0: 64 MiB (size of the /tmp tmpfs)
	// CPUWeight is the sandbox's share of the CPU against other
	// sandboxes when they compete, 1 to 10000 (cgroup v2's cpu.weight
	// scale). 0: 100, everyone's default.
	CPUWeight int
	// CPUPercent, if set, is a ceiling on the CPU time the sandbox may
	// use, in percent of one core (200 is two cores' worth) even when the
	// machine is idle. 0: none.
	CPUPercent int
	// IOWeight is its share of disk time when sandboxes compete, 1 to
	// 10000. 0: 100. It needs a kernel I/O controller that weighs
	// (cgroup v2's io.weight, or the BFQ scheduler); without one it is
	// not applied.
	IOWeight int
}

func (l Limits) withDefaults() Limits {
	if l.MemoryBytes <= 0 {
		l.MemoryBytes = 256 << 20
	}
	if l.Pids <= 0 {
		l.Pids = 256
	}
	if l.NoFile == 0 {
		l.NoFile = 4096
	}
	if l.TmpBytes <= 0 {
		l.TmpBytes = 64 << 20
	}
	if l.CPUWeight <= 0 {
		l.CPUWeight = 100
	}
	if l.IOWeight <= 0 {
		l.IOWeight = 100
	}
	l.CPUWeight, l.IOWeight = min(l.CPUWeight, 10000), min(l.IOWeight, 10000)
	return l
}

// Config configures a Runner.
type Config struct {
	Log *slog.Logger // may be nil
	// CgroupParent optionally overrides where per-sandbox cgroups are
	// created (tests). It must be a directory in a cgroup v2 hierarchy;
	// limits are then written only where the controllers exist there.
	CgroupParent string
	// SandboxUID is, when the node runs as root, the unprivileged host
	// uid (and gid) that root inside every sandbox is. 0 means
	// DefaultSandboxUID. Unprivileged, it is always the node's own uid.
	SandboxUID uint32
	// UIDBase and UIDCount are, when the node runs as root, the range of
	// host uids reserved for sandboxes, one per grain (Spec.UID; the
	// caller keeps the record of which is whose). 0 means the defaults.
	UIDBase, UIDCount uint32
	// Zygotes is how many empty sandboxes the runner keeps started, ready
	// for Start to hand an app to (see zygote.go). 0 means 1; negative
	// means none, and every Start creates its sandbox from scratch.
	Zygotes int
}

// Runner starts sandboxes.
type Runner struct {
	log      *slog.Logger
	mode     string
	uid, gid uint32 // host ids of root inside a sandbox without a Spec.UID
	uidBase  uint32 // root mode: the range Spec.UID must lie in
	uidCount uint32
	cg       *cgroups

	mu      sync.Mutex
	running map[string]bool

	pool zygotePool
}

// NewRunner checks what the kernel allows (user namespaces; root or
// unprivileged; which cgroup version is usable). It fails, saying what is
// missing, only if sandboxes cannot run at all; without usable cgroups it
// logs a warning and sandboxes run without memory and pids limits.
func NewRunner(cfg Config) (*Runner, error) {
	if !maybeInitCalled.Load() {
		return nil, errors.New("sandbox: MaybeInit was not called; it must be the first call in main (or TestMain)")
	}
	if runtime.GOARCH != "amd64" {
		return nil, fmt.Errorf("sandbox: the seccomp filter is written for amd64, not %s", runtime.GOARCH)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Runner{log: log, running: map[string]bool{}}
	if os.Geteuid() == 0 {
		r.mode = "root"
		r.uid, r.gid = cfg.SandboxUID, cfg.SandboxUID
		if r.uid == 0 {
			r.uid, r.gid = DefaultSandboxUID, DefaultSandboxUID
		}
		r.uidBase, r.uidCount = cfg.UIDBase, cfg.UIDCount
		if r.uidBase == 0 || r.uidCount == 0 {
			r.uidBase, r.uidCount = DefaultUIDBase, DefaultUIDCount
		}
		if uint64(r.uidBase)+uint64(r.uidCount) > 1<<32-1 {
			return nil, fmt.Errorf("sandbox: uid range %d+%d passes the highest uid", r.uidBase, r.uidCount)
		}
		if r.uid >= r.uidBase && r.uid < r.uidBase+r.uidCount {
			return nil, fmt.Errorf("sandbox: the default sandbox uid %d lies in the grains' uid range %d+%d", r.uid, r.uidBase, r.uidCount)
		}
	} else {
		r.mode = "unprivileged"
		r.uid, r.gid = uint32(os.Getuid()), uint32(os.Getgid())
	}
	if err := r.checkNamespaces(); err != nil {
		return nil, err
	}
	cg, err := detectCgroups(cfg.CgroupParent, r.mode == "root")
	if cfg.CgroupParent != "" && err != nil {
		return nil, err
	}
	if err != nil {
		log.Warn("sandboxes will run without memory and pids limits: no usable cgroups", "why", err)
	}
	r.cg = cg
	if cl := r.CPULimits(); err == nil && !strings.HasPrefix(cl, "on") {
		log.Warn("sandboxes will run without CPU limits", "why", cl)
	}
	r.cg.removeStale("zygote-*", staleZygote) // a crashed node's
	r.pool.want = cfg.Zygotes
	if r.pool.want == 0 {
		r.pool.want = 1
	}
	r.startFill()
	return r, nil
}

// Mode is "root" or "unprivileged".
func (r *Runner) Mode() string { return r.mode }

// Cgroups is "v2", "v1" or "none".
func (r *Runner) Cgroups() string { return r.cg.version }

// SandboxUID is the host uid and gid that root inside a sandbox is; files
// the app writes in /var belong to it, and a Spec's Var must be writable by
// it (Start chowns the Var dir itself in root mode).
func (r *Runner) SandboxUID() (uid, gid uint32) { return r.uid, r.gid }

// Close ends the runner's zygotes and removes its parent cgroup dirs if
// empty. Running sandboxes are not stopped.
func (r *Runner) Close() error {
	r.closePool()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cg.close()
}

// sysProcAttr is how an init is cloned. Unprivileged, its user namespace
// maps root inside to the node's uid from the start. As root it is cloned
// with no mapping at all (see lateMapping), unless mapped is set.
func (r *Runner) sysProcAttr(mapped bool) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET | syscall.CLONE_NEWCGROUP,
		Pdeathsig: syscall.SIGKILL,
	}
	if r.mode == "root" && !mapped {
		a.AmbientCaps = boundingCaps()
		return a
	}
	a.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.uid), Size: 1}}
	a.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(r.gid), Size: 1}}
	if r.mode == "root" {
		// Without switching to uid 0 *inside*, the child would stay host
		// uid 0, unmapped in the new namespace, and lose every capability
		// at exec. This also drops root's supplementary groups.
		a.Credential = &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
		a.GidMappingsEnableSetgroups = true
	}
	return a
}

// checkNamespaces creates the namespaces once, with an init that exits at
// once, to turn a kernel refusal into advice.
func (r *Runner) checkNamespaces() error {
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{initArg0, modeCheck}, SysProcAttr: r.sysProcAttr(true)}
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("sandbox: cannot create the sandbox namespaces as %s (uid %d): %v.", r.mode, os.Getuid(), err)
	var hints []string
	if readSysctl("user/max_user_namespaces") == "0" {
		hints = append(hints, "user namespaces are disabled: set sysctl user.max_user_namespaces=15000")
	}
	if r.mode == "unprivileged" {
		if readSysctl("kernel/unprivileged_userns_clone") == "0" {
			hints = append(hints, "unprivileged user namespaces are disabled: set sysctl kernel.unprivileged_userns_clone=1")
		}
		if readSysctl("kernel/apparmor_restrict_unprivileged_userns") == "1" {
			hints = append(hints, "AppArmor restricts unprivileged user namespaces: set sysctl kernel.apparmor_restrict_unprivileged_userns=0 or give the erg binary an AppArmor profile with \"userns,\"")
		}
		hints = append(hints, "or run the node as root")
	} else {
		hints = append(hints, "a container runtime or seccomp policy may forbid unshare/clone with namespace flags")
	}
	return fmt.Errorf("%s To fix: %s", msg, strings.Join(hints, "; "))
}

func readSysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Start starts a sandbox and returns once the app has been exec'd (not
// once it listens), or with an error saying what stopped it; a failed
// Start leaves nothing behind. ctx bounds the start only: the sandbox runs
// until it exits or Stop is called.
func (r *Runner) Start(ctx context.Context, spec Spec) (_ *Sandbox, err error) {
	if err := r.checkSpec(&spec); err != nil {
		return nil, err
	}
	r.mu.Lock()
	if r.running[spec.Name] {
		r.mu.Unlock()
		return nil, fmt.Errorf("sandbox %s is already running", spec.Name)
	}
	r.running[spec.Name] = true
	r.mu.Unlock()
	defer func() {
		if err != nil {
			r.forget(spec.Name)
		}
	}()

	limits := spec.Limits.withDefaults()
	s := r.claim(spec.Name, limits)
	if s == nil {
		cg, err := r.cg.create(spec.Name, &limits)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", spec.Name, err)
		}
		s = r.newSandbox(spec.Name, cg)
		if err := s.spawn(); err != nil {
			if rerr := cg.remove(); rerr != nil {
				err = errors.Join(err, rerr)
			}
			return nil, fmt.Errorf("sandbox %s: %w", spec.Name, err)
		}
	}
	if err := s.run(ctx, spec, limits); err != nil {
		// s is gone (Done is closed) and its cgroups removed.
		return nil, fmt.Errorf("sandbox %s: %w", spec.Name, errors.Join(err, s.cleanErr))
	}
	return s, nil
}

func (r *Runner) forget(name string) {
	if name == "" {
		return // a zygote
	}
	r.mu.Lock()
	delete(r.running, name)
	r.mu.Unlock()
}

func (r *Runner) newSandbox(name string, cg *cgroup) *Sandbox {
	label := name
	if label == "" {
		label = "(zygote)"
	}
	return &Sandbox{
		r:          r,
		name:       name,
		cg:         cg,
		log:        r.log.With("sandbox", label),
		idle:       make(chan struct{}),
		answered:   make(chan struct{}),
		started:    make(chan initMsg, 1),
		pending:    map[uint32]chan dialResult{},
		readerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
}

// spawn starts the init in its namespaces and cgroups. It needs no spec:
// the init prepares what it can and waits for run to send one. On error
// nothing is left running, but the cgroups are the caller's to remove.
func (s *Sandbox) spawn() error {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	hostEnd := os.NewFile(uintptr(fds[0]), "sandbox-ctrl")
	initEnd := os.NewFile(uintptr(fds[1]), "sandbox-ctrl-init")
	defer initEnd.Close()
	c, err := net.FileConn(hostEnd)
	hostEnd.Close()
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	s.ctrl = c.(*net.UnixConn)
	// rootFd and varFd are held from the init's first instruction (by
	// /dev/null until the detached mounts replace them), so that nothing
	// the Go runtime opens for itself (its netpoller's epoll and event
	// fds, which take the lowest free numbers) can land on them and be
	// clobbered by the dup onto them: a grain died at start with
	// "epollwait on fd 5 failed with 9" where those numbers were free.
	hold, err := os.Open(os.DevNull)
	if err != nil {
		s.ctrl.Close()
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer hold.Close()
	cmd := &exec.Cmd{
		Path:        "/proc/self/exe",
		Args:        []string{initArg0, modeRun},
		Env:         []string{},
		ExtraFiles:  []*os.File{initEnd, hold, hold},
		SysProcAttr: s.r.sysProcAttr(false),
		// What the init itself writes (a Go runtime fatal error, a panic)
		// is kept for the error if it dies; the app never gets this fd.
		Stderr:    &s.initErr,
		WaitDelay: time.Second,
	}
	if s.cg.version == "v2" {
		fd, err := s.cg.openDir()
		if err != nil {
			s.ctrl.Close()
			return fmt.Errorf("open cgroup: %w", err)
		}
		defer unix.Close(fd)
		// clone3(CLONE_INTO_CGROUP): the init is born in its cgroup.
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = fd
	}
	start := cmd.Start
	if s.r.mode == "root" {
		start = func() error { return startInSpawnNS(cmd) } // see mounts.go
	}
	if err := start(); err != nil {
		s.ctrl.Close()
		return fmt.Errorf("start init: %w", err)
	}
	s.cmd = cmd
	s.pid = cmd.Process.Pid
	initEnd.Close()
	go s.readLoop()
	go s.wait()
	if s.cg.version == "v1" {
		// Before "go": every later thread and child inherits the groups.
		if err := s.cg.addPid(s.pid); err != nil {
			s.kill()
			<-s.done
			return err
		}
	}
	return nil
}

// run hands the spec to the spawned init and waits until the app is
// exec'd. On error the sandbox is gone (Done is closed).
func (s *Sandbox) run(ctx context.Context, spec Spec, limits Limits) error {
	var toClose []*os.File
	defer func() {
		for _, f := range toClose {
			f.Close()
		}
	}()
	fail := func(err error) error {
		for _, f := range toClose {
			f.Close() // before waiting: the output copies end at EOF
		}
		toClose = nil
		s.kill()
		<-s.done
		return err
	}
	cfg := initConfig{
		BecomeRoot: s.r.mode == "root",
		Root:       spec.Root,
		Var:        spec.Var,
		Detached:   s.r.mode == "root",
		TmpBytes:   limits.TmpBytes,
		NoFile:     limits.NoFile,
		Args:       spec.Args,
		Env:        spec.Env,
		Stdout:     spec.Stdout != nil,
		Stderr:     spec.Stderr != nil,
		HostRO:     spec.HostRO,
		Trace:      spec.Trace != nil,
		Bridge:     spec.Bridge,
	}
	s.setTrace(spec.Trace)
	if cfg.BecomeRoot {
		uid, err := s.r.specUID(&spec)
		if err == nil {
			err = lateMapping(s.pid, uid)
		}
		if err != nil {
			return fail(err)
		}
	}
	var pass []int
	if cfg.Detached {
		// As root the host clones the two trees as detached mounts and
		// hands them over: the sandbox's unprivileged uid then needs no
		// way through the host's path to them (a data dir under /root,
		// say), and no path can be swapped between check and mount.
		for _, dir := range []string{spec.Root, spec.Var} {
			f, err := detachedMount(dir)
			if err != nil {
				return fail(err)
			}
			toClose = append(toClose, f)
			pass = append(pass, int(f.Fd()))
		}
	}
	var out *os.File
	for i, w := range []io.Writer{spec.Stdout, spec.Stderr} {
		if w == nil {
			continue
		}
		if i == 1 && out != nil && sameWriter(spec.Stdout, spec.Stderr) {
			pass = append(pass, int(out.Fd()))
			continue
		}
		f, owned, err := s.output(w)
		if err != nil {
			return fail(err)
		}
		if owned {
			toClose = append(toClose, f)
		}
		out = f
		pass = append(pass, int(f.Fd()))
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		return fail(err)
	}
	if len(b)+1 > maxCtrl {
		return fail(fmt.Errorf("args and env too large (%d bytes)", len(b)))
	}
	var oob []byte
	if len(pass) > 0 {
		oob = unix.UnixRights(pass...)
	}
	if _, _, err := s.ctrl.WriteMsgUnix(append([]byte{msgGo}, b...), oob, nil); err != nil {
		select {
		case m := <-s.started: // the init failed before it could read 'G'
			<-s.done
			return errors.New(m.text)
		default:
		}
		return fail(fmt.Errorf("send config to init: %w", err))
	}
	for _, f := range toClose {
		f.Close() // the init has its own copies; pipes must see EOF
	}
	toClose = nil
	select {
	case m := <-s.started:
		if m.kind == msgError {
			<-s.done
			return errors.New(m.text)
		}
		return nil
	case <-s.done:
		// The init may have said why before it exited; done closes only
		// once its messages are read, so the reason is there if it was sent
		// (both cases ready at once, select may pick this one).
		select {
		case m := <-s.started:
			if m.kind == msgError {
				return errors.New(m.text)
			}
		default:
		}
		return fmt.Errorf("init exited during setup: %w", s.Err())
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// output returns the file to pass as the app's stdout or stderr: w itself
// if it is a file, else the write end of a pipe copied to w until the
// sandbox is gone (owned: the caller closes it once it is passed).
func (s *Sandbox) output(w io.Writer) (f *os.File, owned bool, err error) {
	if f, ok := w.(*os.File); ok {
		return f, false, nil
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, false, err
	}
	s.copies.Go(func() {
		io.Copy(w, pr)
		pr.Close()
	})
	return pw, true, nil
}

// sameWriter is a == b without the panic for uncomparable types (as
// os/exec decides to share one pipe between Stdout and Stderr).
func sameWriter(a, b io.Writer) (eq bool) {
	defer func() {
		if recover() != nil {
			eq = false
		}
	}()
	return a == b
}

// detachedMount clones dir as a mount that belongs to no namespace yet.
func detachedMount(dir string) (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("clone mount of %s: %w", dir, err)
	}
	return os.NewFile(uintptr(fd), dir), nil
}
