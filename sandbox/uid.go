package sandbox

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// One host uid per grain, with zygotes.
//
// As root, every grain's sandbox maps root inside to a host uid of its
// own (Spec.UID), so that a grain which escaped its mount namespace would
// still be an unprivileged stranger to every other grain's /var. But a
// zygote is started before anyone knows which grain will take it, and a
// user namespace's uid map can be written only once. So as root an init is
// cloned into its user namespace with no mapping at all, keeping its
// capabilities there across the exec as ambient capabilities (an
// unmapped process would otherwise lose them at execve); it does the
// spec-independent setup (mount propagation, hostname, loopback) like
// that. When a start claims it, the host writes "0 <uid> 1" into its
// uid_map and gid_map, and the init's first act on 'G' is to become root
// inside (setgroups, setresgid, setresuid to 0), which is now that uid on
// the host. Until then it holds no app data and runs only the init's own
// code; its kernel uid is still the host's root, but its capabilities are
// only those of its own user namespace.

// UIDRange is the range of host uids reserved for per-grain Spec.UIDs, and
// ok is false when the runner cannot give them: unprivileged, a user
// namespace can map only the node's own uid, so every sandbox runs as it.
func (r *Runner) UIDRange() (base, count uint32, ok bool) {
	return r.uidBase, r.uidCount, r.mode == "root"
}

// specUID is the host uid (and gid) root inside spec's sandbox is.
func (r *Runner) specUID(spec *Spec) (uint32, error) {
	switch {
	case spec.UID == 0:
		return r.uid, nil
	case r.mode != "root":
		if spec.UID != r.uid {
			return 0, fmt.Errorf("uid %d: an unprivileged node can run sandboxes only as its own uid %d", spec.UID, r.uid)
		}
		return r.uid, nil
	case spec.UID < r.uidBase || spec.UID-r.uidBase >= r.uidCount:
		return 0, fmt.Errorf("uid %d is outside the sandboxes' uid range %d+%d", spec.UID, r.uidBase, r.uidCount)
	}
	return spec.UID, nil
}

// boundingCaps lists the capabilities in this process's bounding set:
// those an init may keep as ambient capabilities.
func boundingCaps() []uintptr {
	var caps []uintptr
	for c := uintptr(0); c < 64; c++ {
		r, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, c, 0, 0, 0)
		if err != nil {
			break // past CAP_LAST_CAP
		}
		if r == 1 {
			caps = append(caps, c)
		}
	}
	return caps
}

// lateMapping maps root inside the unmapped init pid to uid (and the gid
// of the same number).
func lateMapping(pid int, uid uint32) error {
	line := []byte("0 " + strconv.FormatUint(uint64(uid), 10) + " 1\n")
	for _, f := range []string{"uid_map", "gid_map"} {
		p := "/proc/" + strconv.Itoa(pid) + "/" + f
		if err := os.WriteFile(p, line, 0); err != nil {
			return fmt.Errorf("map uid %d: %w", uid, err)
		}
	}
	return nil
}

// becomeRoot is the init's side of lateMapping: on every thread, drop the
// host root's supplementary groups and switch to root inside, which is the
// grain's uid outside. The capabilities the init holds in its namespace
// survive (the kernel clears them only when leaving uid 0 of the
// namespace, and the init was never it).
func becomeRoot() error {
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("drop supplementary groups: %w", err)
	}
	if err := syscall.Setresgid(0, 0, 0); err != nil {
		return fmt.Errorf("setresgid 0: %w", err)
	}
	if err := syscall.Setresuid(0, 0, 0); err != nil {
		return fmt.Errorf("setresuid 0: %w", err)
	}
	return nil
}

// ownVar gives a grain's var dir to uid, mode 0700. If the dir belonged
// to another uid (a grain from before uids were per grain, or restored
// files), everything in it is given over too, without following links.
func ownVar(dir string, fi fs.FileInfo, uid uint32) error {
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != uid {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, int(uid), int(uid))
		})
		if err != nil {
			return err
		}
	}
	if fi.Mode().Perm() != 0o700 {
		return os.Chmod(dir, 0o700)
	}
	return nil
}
