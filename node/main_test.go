package node

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg/apppkg"
	"erg/internal/browsertest"
	"erg/internal/testkit"
	"erg/p2p"
	"erg/sandbox"
)

// Most tests here run in parallel (t.Parallel): every node has its own
// data dir, random ports and grain ids, and the package has no mutable
// globals. Sandboxes share the runner's cgroup parent (<own cgroup>/erg)
// and, as root, the sandbox uid, as any two nodes on a host do. Serial
// are: the limits tests (see limits_test.go); TestConcurrentLoginsAreLimited,
// which lifts the connection caps and counts refusals; the browser test
// that needs a Chromium of its own (its own trusted roots), as several
// at once on two cores failed to fork their GPU process; the other
// browser tests share one Chromium (browsertest.Shared), each in a
// browser context of its own, and run in parallel; the escape battery, which
// re-runs the test binary as another user; TestFriendFoundThroughTheDHT
// (see there); and the tests that build and run programs (native,
// python). The CLI over HTTP takes its ERG_URL and ERG_TOKEN in the
// command's own environment (ergProcess.overHTTP), not t.Setenv, which
// would keep a test serial.
func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	code := m.Run()
	browsertest.Close()
	testkit.Cleanup()
	os.Exit(code)
}

// repoRoot is the module root.
func repoRoot(t testing.TB) string { return testkit.Root() }

// sharedBuildDir is the test process's build dir (see testkit.Dir).
func sharedBuildDir(t testing.TB) string { return testkit.Dir(t) }

// goBuild builds a main package of this module once per test process.
func goBuild(t testing.TB, pkg, out string) string { return testkit.GoBuild(t, pkg, out) }

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
const appsEnv = testkit.Env

// testApps builds the test and sample apps into one apps dir, once per
// test process: echo, the sample apps, and the sandbox escape probe.
func testApps(t testing.TB) string { return testkit.Apps(t) }

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
		P2PListen: p2p.Loopback,
		Log:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if _, ok := t.(*testing.B); ok {
		cfg.Log = slog.New(slog.DiscardHandler) // keep benchmark output to the figures
	}
	if mod != nil {
		mod(&cfg)
	}
	// Every node installs the same test apps: the first one's installed
	// trees are linked into the next ones' data dirs, which then hash the
	// apps dir and record the apps but copy nothing.
	seed := cfg.AppsDir != "" && cfg.AppsDir == testApps(t)
	if seed {
		testkit.Seed(t, cfg.DataDir)
	}
	n, err := Start(context.Background(), cfg)
	if testkit.LockHeld(err) {
		testkit.Poll(5*time.Second, func() bool { n, err = Start(context.Background(), cfg); return !testkit.LockHeld(err) })
	}
	if err != nil {
		t.Fatalf("start node: %v", err)
	}
	if seed {
		testkit.Remember(t, cfg.DataDir)
	}
	// No test node may listen where other machines could reach it.
	for _, a := range n.P2PAddrs() {
		if !strings.HasPrefix(a, "/ip4/127.") {
			n.Close()
			t.Fatalf("test node listens on %s, beyond loopback", a)
		}
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
		Jar: testkit.LocalhostJar{CookieJar: jar},
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", addr)
			},
			TLSClientConfig: &tls.Config{RootCAs: n.roots()},
		},
		Timeout: 30 * time.Second,
	}
}

// roots are the CAs a client of the node trusts: the node's own, and the
// test's for certificates it gave the node.
func (n *testNode) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	if n.cfg.TLS.Roots != nil {
		pool = n.cfg.TLS.Roots.Clone()
	}
	if n.certs != nil && n.certs.CACertificate() != nil {
		ca, _ := x509.ParseCertificate(n.certs.CACertificate())
		pool.AddCert(ca)
	}
	return pool
}

// newGrain creates a grain and signs the test node's client in to it.
func (n *testNode) newGrain(app string) (id, origin string) {
	n.t.Helper()
	g, err := n.grains.NewGrain(context.Background(), n.owner(), app, "")
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
