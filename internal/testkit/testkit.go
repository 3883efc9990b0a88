// Package testkit is what tests of nodes share, in package node and in
// nodetest alike: the erg binary and one apps dir (the echo test app, the
// sample apps and the sandbox escape probe), built once per test process;
// one installed copy of those apps for every node a test process starts
// (see Seed); Await, which polls instead of sleeping; and SkipShort.
package testkit

import (
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"erg/sandbox/sandboxtest"
)

// Env names a prebuilt apps dir, for a test re-run as a user that cannot
// use the go tool.
const Env = "ERG_TEST_APPS"

// packagesDir is where a node keeps installed app trees, below its data dir.
const packagesDir = "packages"

var (
	builds   sync.Map // "pkg out" -> *result
	dirMu    sync.Mutex
	dir      string
	appsOnce result
	seedMu   sync.Mutex
	seeded   bool // the template holds a node's installed trees
)

type result struct {
	once sync.Once
	path string
	err  error
}

// Root is the module root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

// Dir is this test process's build dir, world-traversable so an
// unprivileged node can read what is built there. Cleanup removes it.
func Dir(t testing.TB) string {
	dirMu.Lock()
	defer dirMu.Unlock()
	if dir == "" {
		d, err := os.MkdirTemp("", "erg-node-test-")
		if err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
		dir = d
	}
	return dir
}

// Cleanup removes the build dir; a TestMain calls it after m.Run.
func Cleanup() {
	dirMu.Lock()
	defer dirMu.Unlock()
	if dir != "" {
		removeAll(dir)
		dir = ""
	}
}

// removeAll removes a tree whose directories may be read-only, as
// installed app trees are.
func removeAll(root string) {
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o700)
		}
		return nil
	})
	os.RemoveAll(root)
}

// GoBuild builds a main package of this module to out, once per test
// process.
func GoBuild(t testing.TB, pkg, out string) string {
	v, _ := builds.LoadOrStore(pkg+" "+out, &result{})
	r := v.(*result)
	r.once.Do(func() {
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = Root()
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			r.err = err
			t.Logf("go build %s: %s", pkg, b)
		}
		r.path = out
	})
	if r.err != nil {
		t.Fatalf("go build %s: %v", pkg, r.err)
	}
	return r.path
}

// ErgBinary is the erg command, built once.
func ErgBinary(t testing.TB) string {
	return GoBuild(t, "./cmd/erg", filepath.Join(Dir(t), "bin", "erg"))
}

// Apps returns the apps dir, built once: echo, notes, todo, filedrop and
// probe, each an app tree with its manifest and the sandbox's mount points.
func Apps(t testing.TB) string {
	if d := os.Getenv(Env); d != "" {
		return d
	}
	appsOnce.once.Do(func() { appsOnce.path, appsOnce.err = buildApps(t) })
	if appsOnce.err != nil {
		t.Fatalf("build the test apps: %v", appsOnce.err)
	}
	return appsOnce.path
}

func buildApps(t testing.TB) (string, error) {
	d := filepath.Join(Dir(t), "apps")
	tree := func(name, bin, manifest string, bins ...string) error {
		root := filepath.Join(d, name)
		for _, sub := range []string{"bin", "dev", "proc", "tmp", "var"} {
			if err := os.MkdirAll(filepath.Join(root, sub), 0o755); err != nil {
				return err
			}
		}
		for _, b := range bins {
			if err := copyFile(bin, filepath.Join(root, "bin", b), 0o755); err != nil {
				return err
			}
		}
		return copyFile(filepath.Join(Root(), manifest), filepath.Join(root, "erg.json"), 0o644)
	}
	build := func(name, pkg string) string {
		return GoBuild(t, pkg, filepath.Join(Dir(t), "bin", name))
	}
	if err := tree("echo", build("echo", "./node/testdata/echo"), "node/testdata/echo/erg.json", "echo"); err != nil {
		return "", err
	}
	for _, app := range []string{"notes", "todo", "filedrop"} {
		if err := tree(app, build(app, "./apps/"+app), "apps/"+app+"/erg.json", app); err != nil {
			return "", err
		}
	}
	probe, err := sandboxtest.ProbeBinary()
	if err != nil {
		return "", err
	}
	if err := tree("probe", probe, "node/testdata/probe.json", "probe", "suid"); err != nil {
		return "", err
	}
	return d, nil
}

func copyFile(src, dst string, perm os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, perm)
}

// template holds the app trees the first node installed from Apps.
func template(t testing.TB) string { return filepath.Join(Dir(t), "installed") }

// Seed gives a new node's data dir the app trees an earlier node of this
// test process installed from Apps, as hard links: the node still reads
// the apps dir, hashes every tree and records the apps, but finds each
// tree in place and copies none. Trees are read-only once installed, so
// nodes cannot change one another's. Before any node has been started
// (and after Remember), Seed does nothing.
func Seed(t testing.TB, dataDir string) {
	seedMu.Lock()
	defer seedMu.Unlock()
	if !seeded {
		return
	}
	if err := os.MkdirAll(filepath.Join(dataDir, packagesDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := linkTrees(template(t), filepath.Join(dataDir, packagesDir)); err != nil {
		t.Logf("seed %s: %v", dataDir, err) // the node copies the trees, as without a template
	}
}

// Remember keeps, as the template for Seed, the trees a node started with
// Apps installed in dataDir. Only the first call does anything.
func Remember(t testing.TB, dataDir string) {
	seedMu.Lock()
	defer seedMu.Unlock()
	if seeded {
		return
	}
	tmpl := template(t)
	os.MkdirAll(tmpl, 0o755)
	if err := linkTrees(filepath.Join(dataDir, packagesDir), tmpl); err != nil {
		t.Logf("keep the installed apps: %v", err) // nodes copy them, as without a template
		return
	}
	seeded = true
}

// linkTrees hard-links every dir-* tree below src into dst, keeping modes.
func linkTrees(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), "dir-") || strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if _, err := os.Stat(filepath.Join(dst, e.Name())); err == nil {
			continue
		}
		if err := linkTree(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func linkTree(src, dst string) error {
	tmp := dst + ".link"
	var dirs []string
	var modes []fs.FileMode
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(tmp, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			dirs, modes = append(dirs, target), append(modes, mode.Perm())
			return os.Mkdir(target, 0o700)
		case mode&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, target)
		default:
			return os.Link(p, target)
		}
	})
	if err != nil {
		removeAll(tmp)
		return err
	}
	for i := len(dirs) - 1; i >= 1; i-- {
		os.Chmod(dirs[i], modes[i])
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	return os.Chmod(dst, modes[0])
}

// SkipShort skips a test that is slow because it runs processes or a
// browser, under go test -short; what says which. nodetest.SkipShort is
// the same, for tests outside package node.
func SkipShort(t testing.TB, what string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s: skipped under -short", what)
	}
}

// AwaitTimeout is how long Await waits.
const AwaitTimeout = 30 * time.Second

// Await polls cond until it holds, failing the test if it does not within
// AwaitTimeout. what says what is awaited, for the failure.
func Await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	AwaitFor(t, AwaitTimeout, what, cond)
}

// AwaitFor is Await with its own deadline d.
func AwaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := Poll(d, cond); err != nil {
		t.Fatalf("%v waiting for %s", err, what)
	}
}

// Poll calls cond, at first every millisecond and then every 50ms, until
// it holds or d has passed, when it returns an error.
func Poll(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for wait := time.Millisecond; !cond(); wait = min(2*wait, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %v", d)
		}
		time.Sleep(wait)
	}
	return nil
}

// LockHeld says whether err is a node's refusal of a data dir another
// node holds. Restarting a node in the test process can meet its own
// previous run's lock for a moment: a child process another test forks
// right then holds the lock's open file until it execs (the file is
// close-on-exec), so a test restarting a node in process retries.
func LockHeld(err error) bool {
	return err != nil && strings.Contains(err.Error(), "another erg node is already using")
}

// DialFrom connects to addr from the loopback address src (Linux routes
// all of 127/8 to lo, so 127.0.0.2 is a second client address).
func DialFrom(t testing.TB, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
