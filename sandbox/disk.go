package sandbox

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A grain's /var bounded by the kernel: the node's data dir is usually on
// a file system without project quotas (ext4 as mounted by a distribution
// has none, and they cannot be turned on while it is mounted), so each
// grain's /var is its own ext4 file system in a sparse image file, on a
// loop device, mounted where the var dir is. A write past its size gets
// ENOSPC inside the grain and touches nothing else. The mount lives in the
// node's mount namespace, not a sandbox's: it stays while the node runs
// (a sandbox start costs nothing more), and UnmountImage ends it when the
// grain is removed or the node stops; the loop device goes with the last
// unmount (LO_FLAGS_AUTOCLEAR). Sandboxes get their own image as a
// detached mount and no copy of any other (mounts.go); what a killed node
// left mounted, UnmountImagesUnder ends.

// DiskImages says whether MountImage can work here, and if not why: it
// needs root (mount, loop devices), /dev/loop-control and mkfs.ext4,
// e2fsck and resize2fs (e2fsprogs) on PATH.
func DiskImages() error {
	if os.Geteuid() != 0 {
		return errors.New("the node does not run as root, which loop-mounting a file-system image needs")
	}
	if err := unix.Access("/dev/loop-control", unix.R_OK|unix.W_OK); err != nil {
		return fmt.Errorf("no loop devices: /dev/loop-control: %w", err)
	}
	for _, tool := range []string{"mkfs.ext4", "e2fsck", "resize2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found (install e2fsprogs): %w", tool, err)
		}
	}
	return nil
}

// Mounted reports whether dir is a mount point: its device differs from
// its parent's.
func Mounted(dir string) (bool, error) {
	var st, up unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Lstat(filepath.Dir(dir), &up); err != nil {
		return false, err
	}
	return st.Dev != up.Dev, nil
}

// MountImage mounts the ext4 image img (made, sparse, if it does not
// exist) at dir, which must exist, giving it size bytes first if it has
// another size. A dir already mounted (by this node before it stopped
// without unmounting) is left as it is.
func MountImage(img, dir string, size int64) error {
	if size < minImage {
		return fmt.Errorf("disk image %s: %d bytes is below the least an image can be (%d MiB)", img, size, minImage>>20)
	}
	if m, err := Mounted(dir); err != nil {
		return fmt.Errorf("disk image %s: %w", img, err)
	} else if m {
		return nil
	}
	// A loop device may still back img: the grain's sandbox, just
	// stopped, holds its copy of the mount until the kernel has reaped
	// it. Mounting that device again shares its file system; a second
	// device on the same file would be two file systems writing one
	// image.
	dev, err := loopOf(img)
	if err != nil {
		return err
	}
	// The kernel frees an AUTOCLEAR device a moment after its last
	// unmount, not at it: a resize waits a little for that.
	if fi, err := os.Stat(img); dev != "" && err == nil && fi.Size() != size {
		for range 200 {
			time.Sleep(10 * time.Millisecond)
			if dev, err = loopOf(img); err != nil || dev == "" {
				break
			}
		}
		if err != nil {
			return err
		}
	}
	if dev != "" {
		err := unix.Mount(dev, dir, "ext4", imageFlags, "")
		if err == nil {
			return nil
		}
		// Freed between finding and mounting it: a fresh device below.
		if again, _ := loopOf(img); again == dev {
			return fmt.Errorf("disk image %s: mount %s at %s: %w", img, dev, dir, err)
		}
	}
	fi, err := os.Stat(img)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := makeImage(img, size); err != nil {
			os.Remove(img)
			return err
		}
	case err != nil:
		return fmt.Errorf("disk image %s: %w", img, err)
	case fi.Size() != size:
		if err := resizeImage(img, fi.Size(), size); err != nil {
			return err
		}
	}
	return mountLoop(img, dir)
}

// imageFlags are the mount flags of an image; the sandbox's bind of it
// has nosuid and nodev too.
const imageFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOATIME

// loopOf is the loop device backed by img, or "" if none is.
func loopOf(img string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(img, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", nil
		}
		return "", fmt.Errorf("disk image %s: %w", img, err)
	}
	for _, l := range loopDevices() {
		fd, err := unix.Open(l.dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		info, err := unix.IoctlLoopGetStatus64(fd)
		unix.Close(fd)
		if err == nil && info.Inode == st.Ino && info.Device == st.Dev {
			return l.dev, nil
		}
	}
	return "", nil
}

// minImage is the smallest image mkfs.ext4 makes a usable file system of.
const minImage = 4 << 20

func makeImage(img string, size int64) error {
	f, err := os.OpenFile(img, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", img, err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("disk image %s: %w", img, err)
	}
	// No blocks reserved for root: the grain's root is not the host's.
	// Lazy init keeps mkfs at a few milliseconds for any size.
	return run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", "lazy_itable_init=1,lazy_journal_init=1", img)
}

// resizeImage changes an unmounted image's size. Shrinking below what its
// files take fails in resize2fs and leaves the image as it was.
func resizeImage(img string, from, to int64) error {
	// resize2fs wants a file system checked first; e2fsck's 1 is
	// "errors fixed", which is fine.
	if err := run("e2fsck", "-f", "-p", img); err != nil {
		var x *exec.ExitError
		if !errors.As(err, &x) || x.ExitCode() != 1 {
			return err
		}
	}
	if to > from {
		if err := os.Truncate(img, to); err != nil {
			return fmt.Errorf("disk image %s: %w", img, err)
		}
		return run("resize2fs", "-f", img)
	}
	if err := run("resize2fs", "-f", img, strconv.FormatInt(to>>10, 10)+"K"); err != nil {
		return fmt.Errorf("shrink to %d MiB (do its files take more?): %w", to>>20, err)
	}
	if err := os.Truncate(img, to); err != nil {
		return fmt.Errorf("disk image %s: %w", img, err)
	}
	return nil
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, args[len(args)-1], err, out)
	}
	return nil
}

// mountLoop puts img on a free loop device and mounts it at dir. The
// device is freed by the kernel when the mount goes (AUTOCLEAR), so
// nothing but the mount needs cleaning up.
func mountLoop(img, dir string) error {
	f, err := os.OpenFile(img, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", img, err)
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("disk image %s: %w", img, err)
	}
	defer ctl.Close()
	// Another process may take the free device between asking and
	// configuring it: EBUSY, ask again.
	for range 32 {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("disk image %s: free loop device: %w", img, err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		lo, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("disk image %s: %w", img, err)
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		copy(cfg.Info.File_name[:], img)
		err = unix.IoctlLoopConfigure(int(lo.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			lo.Close()
			continue
		}
		if err != nil {
			lo.Close()
			return fmt.Errorf("disk image %s: configure %s: %w", img, dev, err)
		}
		err = unix.Mount(dev, dir, "ext4", imageFlags, "")
		// Closing the last fd of a device with AUTOCLEAR and no mount
		// frees it; with the mount, the mount holds it.
		lo.Close()
		if err != nil {
			return fmt.Errorf("disk image %s: mount %s at %s: %w", img, dev, dir, err)
		}
		// mkfs makes lost+found, which a grain has no use for.
		os.Remove(filepath.Join(dir, "lost+found"))
		return nil
	}
	return fmt.Errorf("disk image %s: no free loop device after 32 tries", img)
}

// UnmountImage unmounts what MountImage mounted at dir; a dir not mounted
// is no error. Sandboxes still running on it keep the file system (and its
// loop device) until they end.
func UnmountImage(dir string) error {
	m, err := Mounted(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	if !m {
		return nil
	}
	if err := unix.Unmount(dir, 0); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			err = unix.Unmount(dir, unix.MNT_DETACH)
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
	}
	return nil
}

// DiskUsage is the bytes the files under dir take, without following
// links or crossing into other mounts: for a var dir with no image,
// what the grain has written.
func DiskUsage(dir string) (int64, error) {
	var root unix.Stat_t
	if err := unix.Lstat(dir, &root); err != nil {
		return 0, err
	}
	var total int64
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil // removed while we walk
			}
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return nil
		}
		// Only a directory can be another mount; overlayfs gives files
		// their lower layer's device, not the directory's.
		if d.IsDir() && st.Dev != root.Dev {
			return filepath.SkipDir
		}
		total += st.Blocks * 512
		return nil
	})
	return total, err
}

// ImageUsage is the bytes used on the file system mounted at dir.
func ImageUsage(dir string) (used, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}

// FreeSpace is the bytes free for an unprivileged writer on the file
// system holding dir.
func FreeSpace(dir string) (free, size int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	return int64(st.Bavail) * st.Bsize, int64(st.Blocks) * st.Bsize, nil
}
