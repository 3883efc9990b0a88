// Package nodetest is a harness for tests that tell a story across erg
// nodes through their public API only: the JSON API over a node's control
// socket (erg.Client), the erg command, and plain HTTP to its web port.
//
//	env := nodetest.New(t)
//	a, b := env.Node("anode"), env.Node("bnode", nodetest.Owner("bob"))
//	env.Befriend(a, b)
//	g := a.NewGrain("notes", "Plans")
//	a.ShareWith(g, b, "editor")
//	w := b.Open(g)
//	code, body := w.Get("/api/note")
//
// Env.Node runs a node in the test process (node.Start); Env.Process runs
// it as an `erg run` process, which -short skips. Every node has the test
// apps (echo, notes, todo, filedrop, probe) installed, built once per test
// process; a test binary using this package calls Main from its TestMain.
package nodetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"erg"
	"erg/apppkg"
	"erg/internal/testkit"
	"erg/node"
	"erg/p2p"
	"erg/sandbox"
)

// Main runs a test binary's tests: call it from TestMain as
// os.Exit(nodetest.Main(m)). It lets the binary serve as a sandbox init
// (in-process nodes re-execute it) and removes what was built.
func Main(m *testing.M) int {
	sandbox.MaybeInit()
	code := m.Run()
	testkit.Cleanup()
	return code
}

// SkipShort skips a test that is slow because it runs processes or a
// browser, under go test -short. what says which.
func SkipShort(t testing.TB, what string) {
	t.Helper()
	testkit.SkipShort(t, what)
}

// AwaitTimeout is how long Await waits.
const AwaitTimeout = testkit.AwaitTimeout

// Await polls cond until it holds, failing the test if it does not within
// AwaitTimeout. what says what is awaited, for the failure. Tests use it
// instead of sleeping.
func Await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testkit.AwaitFor(t, AwaitTimeout, what, cond)
}

// AwaitFor is Await with its own deadline d.
func AwaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.AwaitFor(t, d, what, cond)
}

// Apps is the apps dir every node installs at start.
func Apps(t testing.TB) string { return testkit.Apps(t) }

// ErgBinary is the erg command, built once per test process.
func ErgBinary(t testing.TB) string { return testkit.ErgBinary(t) }

// PackApp packs one of the test apps as a signed package of version v,
// signed by key (which gives it its app id).
func PackApp(t testing.TB, name string, key ed25519.PrivateKey, v int64) []byte {
	t.Helper()
	tree := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(tree, os.DirFS(filepath.Join(Apps(t), name))); err != nil {
		t.Fatal(err)
	}
	m, err := apppkg.ReadManifest(tree)
	if err != nil {
		t.Fatal(err)
	}
	m.ID = apppkg.AppID(key.Public().(ed25519.PublicKey))
	m.Version = v
	data, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(tree, apppkg.ManifestFile), 0o644)
	if err := os.WriteFile(filepath.Join(tree, apppkg.ManifestFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := apppkg.Pack(context.Background(), tree, key, &buf, apppkg.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Env is one test's world of nodes.
type Env struct {
	t     *testing.T
	mu    sync.Mutex
	nodes map[string]*Node
}

// New returns an empty environment; its nodes stop when the test ends.
func New(t *testing.T) *Env {
	return &Env{t: t, nodes: map[string]*Node{}}
}

// Option changes how a node is started.
type Option func(*Node)

// Owner names the node's owner (default "alice").
func Owner(username string) Option { return func(n *Node) { n.Owner = username } }

// Bootstrap gives the node peers to join the DHT through.
func Bootstrap(addrs ...string) Option {
	return func(n *Node) { n.bootstrap = append(n.bootstrap, addrs...) }
}

// Anonymous starts the node without a name, so it goes by its owner's.
func Anonymous() Option { return func(n *Node) { n.anonymous = true } }

// NoApps starts the node with no apps installed.
func NoApps() Option { return func(n *Node) { n.noApps = true } }

// P2PListen sets the node's libp2p listen addresses (default p2p.Loopback:
// a test node never listens beyond loopback).
func P2PListen(addrs ...string) Option {
	return func(n *Node) { n.p2pListen = append(n.p2pListen, addrs...) }
}

// DialFunc dials a network address, as net.Dialer.DialContext does.
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Netns runs a process node inside the network namespace ns (ip netns
// exec), reaching its web port through dial; unless P2PListen says
// otherwise it listens for libp2p as a plain `erg run` does, on every
// interface and its own port. For the lab (internal/lab), whose
// namespaces link only to each other.
func Netns(ns string, dial DialFunc) Option {
	return func(n *Node) { n.netns, n.dial = ns, dial }
}

// Args adds flags to a process node's `erg run`.
func Args(args ...string) Option { return func(n *Node) { n.extra = append(n.extra, args...) } }

// Environ adds variables (NAME=VALUE) to a process node's environment.
func Environ(kv ...string) Option { return func(n *Node) { n.environ = append(n.environ, kv...) } }

// WithConfig changes an in-process node's Config before it starts.
func WithConfig(f func(*node.Config)) Option { return func(n *Node) { n.mod = f } }

// Node is a running node of an Env.
type Node struct {
	Name    string // the node's name, as its friends see it (unless Anonymous)
	Owner   string // its owner's username
	DataDir string

	env       *Env
	t         *testing.T
	bootstrap []string
	p2pListen []string
	netns     string
	dial      DialFunc
	extra     []string
	environ   []string
	anonymous bool
	noApps    bool
	process   bool
	mod       func(*node.Config)

	mu       sync.Mutex
	setupURL string     // the process's, from its stdout
	n        *node.Node // in-process
	cmd      *exec.Cmd  // process
	done     chan struct{}
}

func (e *Env) add(name string, opts []Option) *Node {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.nodes[name]; ok {
		e.t.Fatalf("two nodes named %s", name)
	}
	n := &Node{Name: name, Owner: "alice", DataDir: filepath.Join(e.t.TempDir(), name), env: e, t: e.t}
	for _, o := range opts {
		o(n)
	}
	e.nodes[name] = n
	// Before the data dir goes: what a killed node left mounted in it.
	e.t.Cleanup(func() { sandbox.UnmountImagesUnder(n.DataDir) })
	return n
}

// Node starts a node in the test process.
func (e *Env) Node(name string, opts ...Option) *Node {
	e.t.Helper()
	n := e.add(name, opts)
	n.startInProcess()
	e.t.Cleanup(func() { n.Stop() })
	return n
}

// Process starts a node as an `erg run` process. Under -short it skips
// the test.
func (e *Env) Process(name string, opts ...Option) *Node {
	e.t.Helper()
	SkipShort(e.t, "erg run processes")
	n := e.add(name, opts)
	n.process = true
	n.startProcess()
	e.t.Cleanup(func() { n.Stop() })
	return n
}

func (n *Node) startInProcess() {
	n.t.Helper()
	cfg := node.Config{
		DataDir:   n.DataDir,
		Listen:    "127.0.0.1:0",
		GrainIdle: time.Minute,
		Owner:     n.Owner,
		Bootstrap: n.bootstrap,
		P2PListen: n.listen(),
		Log:       slog.New(slog.NewTextHandler(logWriter{n.t, n.Name}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if !n.anonymous {
		cfg.Name = n.Name
	}
	if !n.noApps {
		cfg.AppsDir = Apps(n.t)
		testkit.Seed(n.t, n.DataDir)
	}
	if n.mod != nil {
		n.mod(&cfg)
	}
	nd, err := node.Start(context.Background(), cfg)
	if testkit.LockHeld(err) {
		testkit.Poll(5*time.Second, func() bool { nd, err = node.Start(context.Background(), cfg); return !testkit.LockHeld(err) })
	}
	if err != nil {
		n.t.Fatalf("start %s: %v", n.Name, err)
	}
	if !n.noApps {
		testkit.Remember(n.t, n.DataDir)
	}
	n.mu.Lock()
	n.n = nd
	n.mu.Unlock()
}

// listen is where the node's libp2p host listens.
func (n *Node) listen() []string {
	if len(n.p2pListen) == 0 && n.netns == "" {
		return p2p.Loopback
	}
	return n.p2pListen
}

func (n *Node) args() []string {
	args := []string{"run", "--data", n.DataDir, "--listen", "127.0.0.1:0", "--owner", n.Owner}
	if !n.anonymous {
		args = append(args, "--name", n.Name)
	}
	if !n.noApps {
		args = append(args, "--apps", Apps(n.t))
	}
	for _, a := range n.listen() {
		args = append(args, "--p2p-listen", a)
	}
	for _, b := range n.bootstrap {
		args = append(args, "--bootstrap", b)
	}
	args = append(args, n.extra...)
	return args
}

func (n *Node) startProcess() {
	n.t.Helper()
	if !n.noApps {
		testkit.Seed(n.t, n.DataDir)
	}
	cmd := exec.Command(ErgBinary(n.t), n.args()...)
	if n.netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", n.netns, ErgBinary(n.t)}, n.args()...)...)
	}
	if len(n.environ) > 0 {
		cmd.Env = append(os.Environ(), n.environ...)
	}
	n.mu.Lock()
	n.setupURL = ""
	n.mu.Unlock()
	cmd.Stdout = stdoutWatcher{n}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	done := make(chan struct{})
	logged := make(chan struct{})
	go func() {
		defer close(logged)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			n.t.Log(n.Name+":", sc.Text())
		}
	}()
	go func() { <-logged; cmd.Wait(); close(done) }()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
	c := n.Client()
	var last error
	AwaitFor(n.t, AwaitTimeout, "erg run "+n.Name+" to answer", func() bool {
		select {
		case <-done:
			n.t.Fatalf("erg run %s exited: %v", n.Name, cmd.ProcessState)
		default:
		}
		_, last = c.Status(context.Background())
		return last == nil
	})
	if !n.noApps {
		testkit.Remember(n.t, n.DataDir)
	}
}

// IsProcess says whether the node runs as an `erg run` process.
func (n *Node) IsProcess() bool { return n.process }

// Pid is the process id of a process node's `erg run` (ip netns exec
// runs it in its own place), 0 when none runs.
func (n *Node) Pid() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Stop stops the node gracefully (SIGTERM for a process); it does nothing
// if the node is stopped.
func (n *Node) Stop() { n.stop(syscall.SIGTERM) }

// Kill stops a process node with SIGKILL, as a crash would.
func (n *Node) Kill() { n.stop(syscall.SIGKILL) }

func (n *Node) stop(sig syscall.Signal) {
	n.mu.Lock()
	nd, cmd, done := n.n, n.cmd, n.done
	n.n, n.cmd = nil, nil
	n.mu.Unlock()
	if nd != nil {
		nd.Close()
	}
	if cmd != nil {
		cmd.Process.Signal(sig)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
			n.t.Errorf("erg run %s did not exit on %v", n.Name, sig)
		}
	}
}

// Restart starts a stopped node again on the same data dir, the way it
// ran before; a running node is stopped first.
func (n *Node) Restart() {
	n.t.Helper()
	n.Stop()
	if n.process {
		n.startProcess()
	} else {
		n.startInProcess()
	}
}

// Client calls the node's JSON API over its control socket, as its owner.
func (n *Node) Client() *erg.Client { return erg.NewClient(node.SocketPath(n.DataDir)) }

// Status is the node's status; it fails the test if the node does not
// answer.
func (n *Node) Status() erg.Status {
	n.t.Helper()
	s, err := n.Client().Status(context.Background())
	if err != nil {
		n.t.Fatalf("status of %s: %v", n.Name, err)
	}
	return s
}

// Browser returns a new browser-like HTTP client of the node's web port:
// its own cookie jar, and every host (g-<id>.localhost included) dialed at
// the node's address.
func (n *Node) Browser() *http.Client {
	u, err := url.Parse(n.Status().URL)
	if err != nil {
		n.t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", u.Port())
	jar, _ := cookiejar.New(nil)
	dial := n.dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	return &http.Client{
		Jar: testkit.LocalhostJar{CookieJar: jar},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		}},
		Timeout: 30 * time.Second,
	}
}

// CLI runs the erg command against the node (erg --data DIR args...) and
// returns its output; the test fails if the command fails.
func (n *Node) CLI(args ...string) string {
	n.t.Helper()
	out, stderr, err := n.cli(args)
	if err != nil {
		n.t.Fatalf("erg %s on %s: %v\n%s", strings.Join(args, " "), n.Name, err, stderr)
	}
	return out
}

// CLIFails runs the erg command as CLI does, expecting it to fail, and
// returns what it said on stderr.
func (n *Node) CLIFails(args ...string) string {
	n.t.Helper()
	out, stderr, err := n.cli(args)
	if err == nil {
		n.t.Fatalf("erg %s on %s succeeded:\n%s", strings.Join(args, " "), n.Name, out)
	}
	return stderr
}

func (n *Node) cli(args []string) (stdout, stderr string, err error) {
	cmd := exec.Command(ErgBinary(n.t), append([]string{"--data", n.DataDir}, args...)...)
	var e strings.Builder
	cmd.Stderr = &e
	out, err := cmd.Output()
	return string(out), e.String(), err
}

// Befriend makes a and b friends through an invite a makes and b adds.
func (e *Env) Befriend(a, b *Node) {
	e.t.Helper()
	ctx := context.Background()
	inv, err := a.Client().NewFriendInvite(ctx)
	if err != nil {
		e.t.Fatalf("friend invite on %s: %v", a.Name, err)
	}
	if _, err := b.Client().AddFriend(ctx, inv.Code); err != nil {
		e.t.Fatalf("%s adds %s: %v", b.Name, a.Name, err)
	}
}

// FriendOnline says whether n lists its friend named name as online.
func (n *Node) FriendOnline(name string) bool {
	fs, err := n.Client().Friends(context.Background())
	if err != nil {
		return false
	}
	for _, f := range fs {
		if f.Name == name {
			return f.Online
		}
	}
	return false
}

// NewGrain creates a grain of app, owned by the node's owner.
func (n *Node) NewGrain(app, title string) erg.Grain {
	n.t.Helper()
	g, err := n.Client().NewGrain(context.Background(), app, title)
	if err != nil {
		n.t.Fatalf("new %s grain on %s: %v", app, n.Name, err)
	}
	return g
}

// ShareWith shares the node's grain g with the friend node's owner.
func (n *Node) ShareWith(g erg.Grain, friend *Node, role string) erg.Share {
	n.t.Helper()
	sh, err := n.Client().NewShare(context.Background(), g.ID, erg.ShareRequest{Role: role, Friend: friend.Name})
	if err != nil {
		n.t.Fatalf("share %s with %s: %v", g.ID, friend.Name, err)
	}
	return sh
}

// Shared finds the grain titled title a friend shared with the node's
// owner, waiting for it to arrive.
func (n *Node) Shared(title string) erg.Grain {
	n.t.Helper()
	var found erg.Grain
	AwaitFor(n.t, AwaitTimeout, fmt.Sprintf("a grain %q shared with %s", title, n.Name), func() bool {
		gs, err := n.Client().Grains(context.Background())
		if err != nil {
			return false
		}
		for _, g := range gs {
			if g.From != "" && g.Title == title {
				found = g
				return true
			}
		}
		return false
	})
	return found
}

type logWriter struct {
	t    testing.TB
	name string
}

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(w.name + ": " + strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
