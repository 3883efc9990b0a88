package node

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"erg/apppkg"
	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

var (
	buildOnce sync.Map   // target -> *buildResult
	buildMu   sync.Mutex // guards buildDir
	appsMu    sync.Mutex // guards building the apps dir
	buildDir  string
)

type buildResult struct {
	once sync.Once
	path string
	err  error
}

// repoRoot is the module root, found from this file's directory.
func repoRoot(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

func sharedBuildDir(t testing.TB) string {
	buildMu.Lock()
	defer buildMu.Unlock()
	if buildDir == "" {
		d, err := os.MkdirTemp("", "erg-node-test-")
		if err != nil {
			t.Fatal(err)
		}
		// World-traversable, so an unprivileged node can read what we build.
		os.Chmod(d, 0o755)
		buildDir = d
	}
	return buildDir
}

// goBuild builds a main package of this module once per test process.
func goBuild(t testing.TB, pkg, out string) string {
	v, _ := buildOnce.LoadOrStore(pkg+" "+out, &buildResult{})
	r := v.(*buildResult)
	r.once.Do(func() {
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
		cmd.Dir = repoRoot(t)
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

// appTree builds the app at pkg into a tree with its manifest and the
// sandbox's mount points, under dir/name.
func appTree(t testing.TB, appsDir, name, pkg, manifest string) string {
	tree := filepath.Join(appsDir, name)
	bin := goBuild(t, pkg, filepath.Join(sharedBuildDir(t), "bin", name))
	for _, d := range []string{"bin", "dev", "proc", "tmp", "var"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFileT(t, bin, filepath.Join(tree, "bin", name), 0o755)
	copyFileT(t, filepath.Join(repoRoot(t), manifest), filepath.Join(tree, "erg.json"), 0o644)
	return tree
}

func copyFileT(t testing.TB, src, dst string, perm os.FileMode) {
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, perm); err != nil {
		t.Fatal(err)
	}
}

// appsEnv names a prebuilt apps dir, for a test re-run as a user that
// cannot use the go tool.
const appsEnv = "ERG_TEST_APPS"

// testApps builds the test and sample apps into one apps dir: echo, the
// sample apps, and the sandbox escape probe.
func testApps(t testing.TB) string {
	if dir := os.Getenv(appsEnv); dir != "" {
		return dir
	}
	dir := filepath.Join(sharedBuildDir(t), "apps")
	appsMu.Lock()
	defer appsMu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, "probe", "erg.json")); err == nil {
		return dir
	}
	appTree(t, dir, "echo", "./node/testdata/echo", "node/testdata/echo/erg.json")
	for _, app := range []string{"notes", "todo", "filedrop"} {
		appTree(t, dir, app, "./apps/"+app, "apps/"+app+"/erg.json")
	}
	probe, err := sandboxtest.ProbeBinary()
	if err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "probe")
	for _, d := range []string{"bin", "dev", "proc", "tmp", "var"} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFileT(t, probe, filepath.Join(tree, "bin", "probe"), 0o755)
	copyFileT(t, probe, filepath.Join(tree, "bin", "suid"), 0o755)
	copyFileT(t, filepath.Join(repoRoot(t), "node/testdata/probe.json"), filepath.Join(tree, "erg.json"), 0o644)
	return dir
}

type testNode struct {
	*Node
	t    testing.TB
	http *http.Client
}

// startNode starts an in-process node on a free loopback port with the
// test apps installed.
func startNode(t testing.TB, mod func(*Config)) *testNode {
	t.Helper()
	cfg := Config{
		DataDir:   filepath.Join(t.TempDir(), "data"),
		Listen:    "127.0.0.1:0",
		GrainIdle: time.Minute,
		AppsDir:   testApps(t),
		Owner:     "alice",
		Log:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if _, ok := t.(*testing.B); ok {
		cfg.Log = slog.New(slog.DiscardHandler) // keep benchmark output to the figures
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	tn := &testNode{Node: n, t: t}
	tn.http = tn.newClient()
	t.Cleanup(func() {
		n.Close()
		// Installed trees are read-only; a non-root owner must make them
		// writable again before t.TempDir's cleanup can remove them.
		apppkg.RemoveTree(filepath.Join(cfg.DataDir, packagesDir))
	})
	return tn
}

// newClient returns a browser-like client: a cookie jar, and every host
// (g-<id>.localhost included) dialed at the node's address.
func (n *testNode) newClient() *http.Client {
	jar, _ := cookiejar.New(nil)
	addr := n.Addr()
	return &http.Client{
		Jar: localhostJar{jar},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
		},
		Timeout: 30 * time.Second,
	}
}

// newGrain creates a grain and signs the test node's client in to it.
func (n *testNode) newGrain(app string) (id, origin string) {
	n.t.Helper()
	g, err := n.NewGrain(context.Background(), n.owner(), app, "")
	if err != nil {
		n.t.Fatalf("new grain: %v", err)
	}
	resp, err := n.http.Get(g.URL)
	if err != nil {
		n.t.Fatalf("login: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		n.t.Fatalf("login: %s", resp.Status)
	}
	origin, _, _ = strings.Cut(g.URL, "/_erg/")
	return g.ID, origin
}

func (n *testNode) get(url string) (int, string) {
	n.t.Helper()
	resp, err := n.http.Get(url)
	if err != nil {
		n.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
