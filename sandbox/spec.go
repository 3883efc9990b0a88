package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

var validName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// Spec describes one sandbox.
type Spec struct {
	Name string // unique per running sandbox, [a-z0-9-], used for the cgroup dir name
	// Root is the app tree on the host, mounted read-only as /. It must
	// already contain empty dirs dev, proc, tmp and var.
	Root   string
	Var    string   // host dir bind-mounted read-write at /var (nosuid,nodev)
	Args   []string // Args[0] is the program path inside the sandbox
	Env    []string
	Limits Limits
	// UID is, when the node runs as root, the host uid (and gid) root
	// inside this sandbox is, from the runner's UIDRange; its Var is
	// given to it, mode 0700. 0 means the runner's SandboxUID.
	// Unprivileged it must be 0 or the node's own uid.
	UID uint32
	// Stdout and Stderr receive the app's output; nil discards it.
	Stdout, Stderr io.Writer

	// HostRO, for development only (see dev.go), lists top-level host
	// directories such as /usr, shown read-only at the same place; the
	// root is then built from Root's entries instead of Root itself, so
	// Root needs no mount points.
	HostRO []string
	// Trace, if set, is called with the absolute path (as the sandbox sees
	// it) of every file any process in the sandbox opens, executes, stats,
	// checks or reads a link of (see trace.go). Calls come one at a time,
	// from one goroutine, and all of them before Done is closed.
	Trace func(path string)
	// Bridge, if not 0, has the init open the bridge's listeners (see
	// bridge.go): TCP on 127.0.0.1:Bridge inside, and BridgeSocket.
	Bridge uint16
}

func (r *Runner) checkSpec(spec *Spec) error {
	if !validName.MatchString(spec.Name) {
		return fmt.Errorf("sandbox name %q: use 1 to 63 of [a-z0-9-], starting with a letter or digit", spec.Name)
	}
	if !filepath.IsAbs(spec.Root) {
		return fmt.Errorf("sandbox %s: root %q is not an absolute path", spec.Name, spec.Root)
	}
	if fi, err := os.Stat(spec.Root); err != nil || !fi.IsDir() {
		return fmt.Errorf("sandbox %s: app tree %s is not a directory: %v", spec.Name, spec.Root, err)
	}
	if len(spec.HostRO) > 0 {
		if err := checkDevSpec(spec); err != nil {
			return fmt.Errorf("sandbox %s: %w", spec.Name, err)
		}
	} else if err := checkMountPoints(spec.Root); err != nil {
		return fmt.Errorf("sandbox %s: %w", spec.Name, err)
	}
	if !filepath.IsAbs(spec.Var) {
		return fmt.Errorf("sandbox %s: var dir %q is not an absolute path", spec.Name, spec.Var)
	}
	fi, err := os.Stat(spec.Var)
	if err != nil || !fi.IsDir() {
		return fmt.Errorf("sandbox %s: var dir %s is not a directory: %v", spec.Name, spec.Var, err)
	}
	if len(spec.Args) == 0 || !filepath.IsAbs(spec.Args[0]) {
		return fmt.Errorf("sandbox %s: Args[0] must be the absolute path of the program inside the sandbox, got %q", spec.Name, spec.Args)
	}
	// Best effort: the path is resolved again inside, where symlinks in
	// the tree resolve against the tree.
	if _, err := os.Lstat(filepath.Join(spec.Root, spec.Args[0])); errors.Is(err, fs.ErrNotExist) && !onHostRO(spec.HostRO, spec.Args[0]) {
		return fmt.Errorf("sandbox %s: program %s not found in app tree %s", spec.Name, spec.Args[0], spec.Root)
	}
	uid, err := r.specUID(spec)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", spec.Name, err)
	}
	if r.mode == "root" {
		if err := ownVar(spec.Var, fi, uid); err != nil {
			return fmt.Errorf("sandbox %s: give var dir to sandbox uid %d: %w", spec.Name, uid, err)
		}
	}
	return nil
}
