package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Which mounts a sandbox holds. A new mount namespace is a copy of every
// mount its creator sees, and in a sandbox's user namespace the copies
// are locked together: detaching the old root after pivot_root leaves
// them attached to it until the sandbox ends. Cloned from the node's
// namespace, every sandbox would so hold every grain's /var image mounted
// when it started, and a deleted grain's space would come back, or a
// resize happen, only when the last of those stopped.
//
// So in root mode (the only one with images) inits are cloned from a
// namespace of their own: a copy of the host's made once per process,
// private (nothing mounted on the host later appears in it), with the
// host's images unmounted from it. A sandbox needs nothing in it but
// /dev (and, for a traced dev tree, the host dirs it binds): its app
// tree and /var arrive as detached mounts taken in the node's namespace.

// The spawning thread may be the process's main thread, whose view
// /proc/self shows: what reads the node's own mounts reads
// /proc/thread-self.

// spawnNS is the thread that clones every root-mode init. A mount
// namespace can only be entered per thread (unshare with CLONE_NEWNS
// unshares the thread's fs too), and an init's Pdeathsig fires when the
// thread that cloned it ends, so the thread lives as long as the process:
// one for the process, not one per Runner.
var spawnNS struct {
	once sync.Once
	reqs chan func()
	err  error
}

// startInSpawnNS starts cmd from the spawning thread.
func startInSpawnNS(cmd *exec.Cmd) error {
	spawnNS.once.Do(func() {
		ready := make(chan error)
		spawnNS.reqs = make(chan func())
		go func() {
			// Never unlocked: on return (a failed setup) the thread ends
			// with its namespace.
			runtime.LockOSThread()
			err := enterSpawnNS()
			ready <- err
			if err != nil {
				return
			}
			for f := range spawnNS.reqs {
				f()
			}
		}()
		spawnNS.err = <-ready
	})
	if spawnNS.err != nil {
		return spawnNS.err
	}
	done := make(chan error, 1)
	spawnNS.reqs <- func() { done <- cmd.Start() }
	return <-done
}

func enterSpawnNS() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("sandbox: mount namespace to clone sandboxes from: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("sandbox: make the sandboxes' mount namespace private: %w", err)
	}
	ms, err := readMounts("/proc/thread-self/mountinfo")
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.image() && m.point != "/" {
			if err := unix.Unmount(m.point, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("sandbox: unmount %s from the sandboxes' mount namespace: %w", m.point, err)
			}
		}
	}
	return nil
}

// mountEntry is a line of /proc/*/mountinfo.
type mountEntry struct {
	point, fstype, source string
}

// image reports whether m may be a /var image: ext4 on a loop device.
func (m mountEntry) image() bool {
	return m.fstype == "ext4" && strings.HasPrefix(m.source, "/dev/loop")
}

// readMounts reads a mountinfo file, deepest mount point first.
func readMounts(path string) ([]mountEntry, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sandbox: read mounts: %w", err)
	}
	var ms []mountEntry
	for line := range strings.SplitSeq(string(data), "\n") {
		// id parent maj:min root point options [optional...] - fstype source super
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+2 >= len(f) {
			continue
		}
		ms = append(ms, mountEntry{point: unescapeMount(f[4]), fstype: f[sep+1], source: unescapeMount(f[sep+2])})
	}
	sort.SliceStable(ms, func(i, j int) bool { return len(ms[i].point) > len(ms[j].point) })
	return ms, nil
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// UnmountImagesUnder unmounts the /var images mounted below dir and
// frees the loop devices of image files below dir that nothing mounts:
// what a node killed before it could unmount them left behind. It
// touches nothing outside dir. It returns how many it unmounted or freed.
func UnmountImagesUnder(dir string) (int, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	under := func(p string) bool { return strings.HasPrefix(p, dir+"/") }
	// The calling thread's view, which is the node's: /proc/self is the
	// main thread's, which may be the spawning thread.
	ms, err := readMounts("/proc/thread-self/mountinfo")
	if err != nil {
		return 0, err
	}
	var ended []string // the devices this call unmounted or freed
	var errs []error
	for _, m := range ms {
		if m.image() && under(m.point) {
			if err := UnmountImage(m.point); err != nil {
				errs = append(errs, err)
				continue
			}
			ended = append(ended, m.source)
		}
	}
	// A loop device configured but never mounted (a node killed between
	// the two) has no mount whose end would free it.
	for _, dev := range ImageLoops(dir) {
		name := filepath.Base(dev)
		if holders, _ := os.ReadDir(filepath.Join("/sys/block", name, "holders")); len(holders) > 0 || mounted(ms, dev) {
			continue
		}
		fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		// A device still open or mounted elsewhere is only marked to be
		// freed when that ends (the kernel turns on AUTOCLEAR).
		err = unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
		unix.Close(fd)
		if err == nil {
			ended = append(ended, dev)
		} else if !errors.Is(err, unix.ENXIO) {
			errs = append(errs, fmt.Errorf("free %s: %w", dev, err))
		}
	}
	// Until the kernel has freed them, a MountImage would find the dying
	// devices and try to mount them again. Only the devices ended here are
	// waited for: one left alone above (still held) would stall every
	// start for nothing.
	AwaitLoopsFreed(dir, ended, 5*time.Second)
	return len(ended), errors.Join(errs...)
}

func mounted(ms []mountEntry, dev string) bool {
	for _, m := range ms {
		if m.source == dev {
			return true
		}
	}
	return false
}

// ImageLoops lists the loop devices backed by files below dir, deleted
// files too: while one is listed, its file's space is in use.
func ImageLoops(dir string) []string {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	var devs []string
	for _, l := range loopDevices() {
		if strings.HasPrefix(l.backing, dir+"/") {
			devs = append(devs, l.dev)
		}
	}
	return devs
}

// AwaitLoopsFreed waits, for up to timeout, until none of devs is backed
// by a file below dir, and returns those that still are. The kernel frees
// a loop device a moment after its last unmount, not at it.
func AwaitLoopsFreed(dir string, devs []string, timeout time.Duration) []string {
	for deadline := time.Now().Add(timeout); ; time.Sleep(10 * time.Millisecond) {
		left := slices.DeleteFunc(ImageLoops(dir), func(d string) bool { return !slices.Contains(devs, d) })
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
	}
}

// loopDevice is a configured loop device and the path of its backing
// file as the kernel shows it (a deleted file's ends in " (deleted)").
type loopDevice struct{ dev, backing string }

// loopDevices lists the configured loop devices.
func loopDevices() []loopDevice {
	var ls []loopDevice
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // freed since the glob
		}
		ls = append(ls, loopDevice{dev: "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f))), backing: strings.TrimSuffix(string(b), "\n")})
	}
	return ls
}
