package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// A development sandbox (Spec.HostRO) runs a program that is not packaged
// yet: it has the same namespaces, limits and seccomp filter as any other,
// but its root is built on a small tmpfs from
//
//   - each top-level entry of Spec.Root, bind-mounted read-only at /<name>
//     (symlinks copied as symlinks), so the author's directory needs no
//     mount points of its own;
//   - each host directory in HostRO, bind-mounted read-only at the same
//     place, or copied as a symlink where the host has one (/lib -> usr/lib);
//   - /var, /tmp, /dev and /proc as in a grain.
//
// The tmpfs is then made read-only too, so nothing in the root is writable
// but /var and /tmp.

// checkDevSpec checks the parts of a development spec that checkSpec does
// not: the host directories, and that the app tree does not hide one.
func checkDevSpec(spec *Spec) error {
	seen := map[string]bool{}
	for _, h := range spec.HostRO {
		name := strings.TrimPrefix(h, "/")
		if !path.IsAbs(h) || path.Clean(h) != h || name == "" || strings.Contains(name, "/") {
			return fmt.Errorf("host dir %q: must be a top-level directory such as /usr", h)
		}
		if slices.Contains(mountPoints, name) {
			return fmt.Errorf("host dir %s: /%s is the sandbox's own", h, name)
		}
		if seen[name] {
			return fmt.Errorf("host dir %s listed twice", h)
		}
		seen[name] = true
		if _, err := os.Lstat(filepath.Join(spec.Root, name)); err == nil {
			return fmt.Errorf("app tree %s has its own %q, which would hide the host's %s in development", spec.Root, name, h)
		}
	}
	return nil
}

// onHostRO says whether p (a path inside the sandbox) lies under one of
// the host dirs and exists on the host.
func onHostRO(hostRO []string, p string) bool {
	for _, h := range hostRO {
		if p == h || strings.HasPrefix(p, h+"/") {
			_, err := os.Stat(p)
			return err == nil
		}
	}
	return false
}

// devRoot builds a development root (see above) and returns where it is,
// before the pivot. It runs in the init, in the sandbox's mount namespace.
func devRoot(c *initConfig) (string, error) {
	appFd, vFd := rootFd, varFd
	if !c.Detached {
		// Cloned before the staging tmpfs covers /tmp, where they may be.
		var err error
		if appFd, err = unix.OpenTree(unix.AT_FDCWD, c.Root, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE); err != nil {
			return "", fmt.Errorf("clone app dir %s: %w (it and its parent dirs must be searchable by the sandbox's uid %d)", c.Root, err, os.Getuid())
		}
		if vFd, err = unix.OpenTree(unix.AT_FDCWD, c.Var, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC); err != nil {
			unix.Close(appFd)
			return "", fmt.Errorf("clone var dir %s: %w (it and its parent dirs must be searchable by the sandbox's uid %d)", c.Var, err, os.Getuid())
		}
	}
	defer unix.Close(appFd)
	defer unix.Close(vFd)
	if err := mount("tmpfs", stagingDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700,size=16k,nr_inodes=16"); err != nil {
		return "", fmt.Errorf("staging tmpfs: %w", err)
	}
	app := filepath.Join(stagingDir, "app")
	root := filepath.Join(stagingDir, "root")
	for _, d := range []string{app, root} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return "", err
		}
	}
	// Room for a few thousand names: the mount points and one per entry.
	if err := mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m,nr_inodes=4096"); err != nil {
		return "", fmt.Errorf("root tmpfs: %w", err)
	}
	for _, d := range mountPoints {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := unix.MoveMount(appFd, "", unix.AT_FDCWD, app, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("attach app tree: %w", err)
	}
	if err := unix.MoveMount(vFd, "", unix.AT_FDCWD, filepath.Join(root, "var"), unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return "", fmt.Errorf("attach var: %w", err)
	}
	entries, err := os.ReadDir(app)
	if err != nil {
		return "", fmt.Errorf("read app dir: %w", err)
	}
	for _, e := range entries {
		if slices.Contains(mountPoints, e.Name()) {
			continue // the sandbox's own
		}
		if err := showEntry(filepath.Join(app, e.Name()), filepath.Join(root, e.Name())); err != nil {
			return "", err
		}
	}
	for _, h := range c.HostRO {
		dst := filepath.Join(root, h)
		if _, err := os.Lstat(dst); err == nil {
			return "", fmt.Errorf("app tree has its own %s, which would hide the host's", h)
		}
		err := showEntry(h, dst)
		if errors.Is(err, fs.ErrNotExist) {
			continue // /lib32 on a host without it, say
		}
		if err != nil {
			return "", err
		}
	}
	return root, nil
}

// showEntry makes src appear read-only at dst: a bind mount for a
// directory or regular file, a copy for a symlink. Other kinds of file are
// left out.
func showEntry(src, dst string) error {
	fi, err := os.Lstat(src)
	if err != nil {
		return err
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	case fi.IsDir():
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
	case fi.Mode().IsRegular():
		if err := os.WriteFile(dst, nil, 0o644); err != nil {
			return err
		}
	default:
		return nil
	}
	// Recursive: a host dir may hold mounts of its own, and in a user
	// namespace those are locked to it.
	if err := mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return remount(dst, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV)
}
