package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// initArg0 is argv[0] of a re-executed sandbox init; argv[1] is one of the
// modes below.
const (
	initArg0  = "erg-sandbox-init"
	modeRun   = "run"
	modeCheck = "check" // NewRunner's probe: the namespaces could be created
)

// mountPoints must exist as empty directories in every app tree: the tree
// is mounted read-only, so the init cannot create them.
var mountPoints = []string{"dev", "proc", "tmp", "var"}

// devices are bind-mounted from the host's /dev. mknod is not allowed in a
// user namespace, and these are harmless.
var devices = []string{"null", "zero", "full", "random", "urandom"}

// MaybeInit must be the first call in main() of any binary that starts
// sandboxes (and in TestMain of tests that do). If the process was
// re-executed as a sandbox init it runs the init and never returns;
// otherwise it returns at once.
func MaybeInit() {
	maybeInitCalled.Store(true)
	if len(os.Args) != 2 || os.Args[0] != initArg0 {
		return
	}
	switch os.Args[1] {
	case modeCheck:
		os.Exit(0)
	case modeRun:
		runtime.LockOSThread() // caps, no_new_privs and seccomp are per thread
		runInit()
	}
}

// runInit is pid 1 of a sandbox. It never returns.
func runInit() {
	unix.CloseOnExec(ctrlFd)
	// What needs no spec is done before waiting for it, so that a pooled
	// init has it behind it when the host hands it a spec.
	if err := prepareSystem(); err != nil {
		initFail(err)
	}
	initSend([]byte{msgIdle}, nil)
	c, err := recvGo()
	if err != nil {
		initFail(err)
	}
	if c.BecomeRoot {
		if err := becomeRoot(); err != nil {
			initFail(err)
		}
	}
	// A cgroup namespace rooted at the cgroup the host has placed us in.
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		initFail(fmt.Errorf("unshare cgroup namespace: %w", err))
	}
	if err := setupMounts(c); err != nil {
		initFail(err)
	}
	if err := setupLimits(c); err != nil {
		initFail(err)
	}
	if err := startBridge(c); err != nil {
		initFail(err)
	}
	terms := make(chan os.Signal, 1)
	signal.Notify(terms, syscall.SIGTERM, syscall.SIGINT)
	if c.Trace {
		if err := startTrace(); err != nil {
			initFail(err)
		}
	}
	if err := lockDown(); err != nil {
		initFail(err)
	}
	devnull, err := unix.Open("/dev/null", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		initFail(fmt.Errorf("open /dev/null: %w", err))
	}
	// The app's stdout and stderr are what the host passed for them, or
	// else /dev/null: the init's own are the host's record of the init.
	files := []uintptr{uintptr(devnull), uintptr(devnull), uintptr(devnull)}
	if c.Stdout {
		files[1] = 1
	}
	if c.Stderr {
		files[2] = 2
	}
	pid, err := syscall.ForkExec(c.Args[0], c.Args, &syscall.ProcAttr{
		Dir:   "/",
		Env:   c.Env,
		Files: files,
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		initFail(fmt.Errorf("start app %s: %w", c.Args[0], err))
	}
	unix.Close(devnull)
	initSend(u32Msg(msgReady, uint32(pid)), nil)
	go func() {
		for range terms {
			unix.Kill(pid, unix.SIGTERM)
		}
	}()
	go serveDials(pid)
	for {
		var ws unix.WaitStatus
		wpid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			os.Exit(126)
		}
		if wpid != pid {
			continue // an orphan re-parented to us
		}
		initSend(u32Msg(msgExit, uint32(ws)), nil)
		switch {
		case ws.Exited():
			os.Exit(ws.ExitStatus())
		case ws.Signaled():
			os.Exit(128 + int(ws.Signal()))
		default:
			os.Exit(127)
		}
	}
}

// recvGo waits for the host's 'G' and puts the fds it carries in place.
func recvGo() (*initConfig, error) {
	buf := make([]byte, maxCtrl)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(ctrlFd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil || n == 0 || buf[0] != msgGo {
		os.Exit(125) // the host went away before saying go
	}
	fds, err := parseRights(oob[:oobn])
	if err != nil {
		return nil, err
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return nil, errors.New("truncated start message")
	}
	var c initConfig
	if err := json.Unmarshal(buf[1:n], &c); err != nil {
		return nil, fmt.Errorf("bad config: %w", err)
	}
	var want []int
	if c.Detached {
		want = append(want, rootFd, varFd)
	}
	if c.Stdout {
		want = append(want, 1)
	}
	if c.Stderr {
		want = append(want, 2)
	}
	if len(fds) != len(want) {
		return nil, fmt.Errorf("start message carried %d fds, want %d", len(fds), len(want))
	}
	// Out of the way of the targets first, then onto them.
	for i, fd := range fds {
		hi, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 64)
		if err != nil {
			return nil, fmt.Errorf("dup fd: %w", err)
		}
		unix.Close(fd)
		fds[i] = hi
	}
	for i, fd := range fds {
		flags := unix.O_CLOEXEC
		if want[i] <= 2 {
			flags = 0 // the app inherits its stdout and stderr
		}
		if err := unix.Dup3(fd, want[i], flags); err != nil {
			return nil, fmt.Errorf("dup fd: %w", err)
		}
		unix.Close(fd)
	}
	return &c, nil
}

func initFail(err error) {
	initSend(append([]byte{msgError}, err.Error()...), nil)
	os.Exit(1)
}

func initSend(b, oob []byte) {
	for {
		err := unix.Sendmsg(ctrlFd, b, oob, nil, 0)
		if err != unix.EINTR {
			return
		}
	}
}

// serveDials answers the host's dial requests: connect inside the network
// namespace and hand the connected socket back.
func serveDials(app int) {
	buf := make([]byte, 64)
	for {
		n, _, _, _, err := unix.Recvmsg(ctrlFd, buf, nil, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			// The host closed its end: nobody can reach or stop us any more.
			unix.Kill(app, unix.SIGKILL)
			os.Exit(137)
		}
		id, port, err := parseDialMsg(buf[:n])
		if err != nil {
			continue
		}
		go func() {
			fd, err := dialLoopback(port)
			if err != nil {
				errno, ok := errors.AsType[unix.Errno](err)
				if !ok || errno == 0 {
					errno = unix.EIO
				}
				initSend(dialReplyMsg(id, uint32(errno)), nil)
				return
			}
			initSend(dialReplyMsg(id, 0), unix.UnixRights(fd))
			unix.Close(fd)
		}()
	}
}

func dialLoopback(port uint16) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	sa := &unix.SockaddrInet4{Port: int(port), Addr: [4]byte{127, 0, 0, 1}}
	for {
		err = unix.Connect(fd, sa)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// checkMountPoints reports the first mount point missing from an app tree.
// Symlinks are refused: mounting on one would follow it.
func checkMountPoints(root string) error {
	for _, d := range mountPoints {
		p := filepath.Join(root, d)
		fi, err := os.Lstat(p)
		if err != nil {
			return fmt.Errorf("app tree %s has no %q directory (it must contain empty dirs %v, the sandbox's mount points): %w", root, d, mountPoints, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("app tree %s: %s must be a plain directory (a mount point), not %v", root, p, fi.Mode().Type())
		}
	}
	return nil
}

func mount(src, dst, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(src, dst, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", src, dst, err)
	}
	return nil
}

// remount changes a mount's flags. In a user namespace the flags the mount
// already has (nosuid, noexec, atime...) are locked and must be kept, or
// the kernel refuses with EPERM.
func remount(path string, add uintptr) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", path, err)
	}
	keep := uintptr(st.Flags) & (unix.ST_RDONLY | unix.ST_NOSUID | unix.ST_NODEV | unix.ST_NOEXEC |
		unix.ST_NOATIME | unix.ST_NODIRATIME | unix.ST_RELATIME)
	if err := unix.Mount("", path, "", unix.MS_REMOUNT|unix.MS_BIND|keep|add, ""); err != nil {
		return fmt.Errorf("remount %s: %w", path, err)
	}
	return nil
}

// stagingDir is where the init attaches a detached app tree before
// pivoting into it. A tmpfs covers it first, in the sandbox's own mount
// namespace, so the host's directory is neither touched nor seen.
const stagingDir = "/tmp"

func setupMounts(c *initConfig) error {
	var root string
	if len(c.HostRO) > 0 {
		var err error
		if root, err = devRoot(c); err != nil {
			return err
		}
	} else if c.Detached {
		var err error
		if root, err = attachTrees(); err != nil {
			return err
		}
	} else {
		root = c.Root
		if err := checkMountPoints(root); err != nil {
			return err
		}
		if err := mount(root, root, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("%w (the app tree and its parent dirs must be searchable by the sandbox's uid %d)", err, os.Getuid())
		}
		if err := mount(c.Var, filepath.Join(root, "var"), "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("%w (the var dir and its parent dirs must be searchable by the sandbox's uid %d)", err, os.Getuid())
		}
	}
	v := filepath.Join(root, "var")
	if err := remount(v, unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	tmpOpts := "mode=1777,size=" + strconv.FormatInt(c.TmpBytes, 10)
	if err := mount("tmpfs", filepath.Join(root, "tmp"), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, tmpOpts); err != nil {
		return err
	}
	dev := filepath.Join(root, "dev")
	if err := mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=64k,nr_inodes=64"); err != nil {
		return err
	}
	for _, d := range devices {
		p := filepath.Join(dev, d)
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return err
		}
		if err := mount("/dev/"+d, p, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	links := map[string]string{"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	if err := remount(dev, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NOEXEC); err != nil {
		return err
	}
	if err := mount("proc", filepath.Join(root, "proc"), "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return err
	}
	if err := remount(root, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV); err != nil {
		return err
	}
	// pivot_root(".", ".") stacks the old root on top of the new one, so
	// it can be detached without a directory to put it in.
	if err := unix.Chdir(root); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// attachTrees attaches the detached mounts on rootFd and varFd as the new
// root and its /var, and closes the fds: they lead outside the sandbox.
func attachTrees() (string, error) {
	defer unix.Close(rootFd)
	defer unix.Close(varFd)
	if err := mount("tmpfs", stagingDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=16k,nr_inodes=16"); err != nil {
		return "", fmt.Errorf("staging tmpfs: %w", err)
	}
	root := filepath.Join(stagingDir, "root")
	if err := os.Mkdir(root, 0o700); err != nil {
		return "", err
	}
	if err := unix.MoveMount(rootFd, "", unix.AT_FDCWD, root, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("attach app tree: %w", err)
	}
	if err := checkMountPoints(root); err != nil {
		return "", err
	}
	if err := unix.MoveMount(varFd, "", unix.AT_FDCWD, filepath.Join(root, "var"), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("attach var: %w", err)
	}
	return root, nil
}

// prepareSystem is the part of the setup that needs no spec: it can be
// done before the host has one.
func prepareSystem() error {
	if err := mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte("grain")); err != nil {
		return fmt.Errorf("sethostname: %w", err)
	}
	// A new network namespace starts with lo down.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := syscall.Setrlimit(unix.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return fmt.Errorf("disable core dumps: %w", err)
	}
	return nil
}

func setupLimits(c *initConfig) error {
	// syscall.Setrlimit, not unix: it also stops os/exec from restoring
	// the limit Go started with in children.
	if err := syscall.Setrlimit(unix.RLIMIT_NOFILE, &syscall.Rlimit{Cur: c.NoFile, Max: c.NoFile}); err != nil {
		return fmt.Errorf("limit open files: %w", err)
	}
	return nil
}

// Secure bits, from linux/securebits.h (not in x/sys).
const (
	secbitNoroot            = 1 << 0
	secbitNorootLocked      = 1 << 1
	secbitNoSetuidFixup     = 1 << 2
	secbitNoSetuidFixupLock = 1 << 3
	secbitKeepCapsLocked    = 1 << 5
	secbitNoAmbientRaise    = 1 << 6
	secbitNoAmbientRaiseLck = 1 << 7
)

// lockDown drops every privilege the init holds in its user namespace and
// installs the seccomp filter. The app is forked from this thread and
// inherits all of it.
func lockDown() error {
	// Securebits, the bounding set and ambient caps matter at execve,
	// which only this thread does: per thread is enough.
	bits := secbitNoroot | secbitNorootLocked | secbitNoSetuidFixup | secbitNoSetuidFixupLock |
		secbitKeepCapsLocked | secbitNoAmbientRaise | secbitNoAmbientRaiseLck
	if err := unix.Prctl(unix.PR_SET_SECUREBITS, uintptr(bits), 0, 0, 0); err != nil {
		return fmt.Errorf("set securebits: %w", err)
	}
	for c := uintptr(0); c < 64; c++ {
		err := unix.Prctl(unix.PR_CAPBSET_DROP, c, 0, 0, 0)
		if err == unix.EINVAL {
			break // past CAP_LAST_CAP
		}
		if err != nil {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
		}
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	if err := dropCaps(); err != nil {
		return fmt.Errorf("capset: %w", err)
	}
	// Not dumpable: the app has our uid, and must not open /proc/1/mem.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("set not dumpable: %w", err)
	}
	// The filter's TSYNC sets no_new_privs on the other threads too.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("set no_new_privs: %w", err)
	}
	return installFilter()
}

// dropCaps empties the capability sets of every thread of the init when
// the runtime allows it (no cgo), else of this thread only. The init's
// other threads never exec and run only the init's own code, and the
// seccomp filter applies to them either way.
func dropCaps() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	h, d := uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0]))
	_, _, e := syscall.AllThreadsSyscall(unix.SYS_CAPSET, h, d, 0)
	if e == syscall.ENOTSUP {
		_, _, e = syscall.RawSyscall(unix.SYS_CAPSET, h, d, 0)
	}
	runtime.KeepAlive(&hdr)
	runtime.KeepAlive(&data)
	if e != 0 {
		return e
	}
	return nil
}

func installFilter() error {
	prog := filter()
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return fmt.Errorf("install seccomp filter: %w", e)
	}
	if r != 0 {
		return fmt.Errorf("install seccomp filter: thread %d could not be synchronised", r)
	}
	return nil
}
