package node

import (
	"context"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/internal/testkit"
)

// TestForwardingProcessNeverHoldsTheKey: bob's node runs as its own `erg
// run` process and forwards alice's HTTPS while a visitor signs in to her
// grain through it; then neither bob's process memory nor his data dir
// holds alice's TLS private key, though alice's own process does (the
// check can find it).
func TestForwardingProcessNeverHoldsTheKey(t *testing.T) {
	testkit.SkipShort(t, "erg run processes")
	if os.Geteuid() != 0 {
		t.Skip("reading another process's memory needs root")
	}
	t.Parallel()
	a := startNode(t, func(c *Config) { c.Domain = "alice.test"; c.Name = "alice" })

	dir := filepath.Join(t.TempDir(), "bob")
	cmd := exec.Command(testkit.ErgBinary(t), "run", "--data", dir, "--listen", "127.0.0.1:0", "--owner", "bob", "--name", "bob",
		"--domain", "bob.test", "--p2p-listen", "/ip4/127.0.0.1/tcp/0")
	cmd.Stdout, cmd.Stderr = testWriter{t}, testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	bob := erg.NewClient(SocketPath(dir))
	var st erg.Status
	testkit.AwaitFor(t, 60*time.Second, "bob's node", func() bool {
		var err error
		st, err = bob.Status(context.Background())
		return err == nil
	})
	u, _ := url.Parse(st.URL)
	bobAddr := net.JoinHostPort("127.0.0.1", u.Port())

	ctx := context.Background()
	inv, err := a.friends.NewInvite(ctx, a.owner())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.AddFriend(ctx, inv.Code); err != nil {
		t.Fatal(err)
	}
	bID, err := peer.Decode(st.PeerID)
	if err != nil {
		t.Fatal(err)
	}
	testkit.AwaitFor(t, 30*time.Second, "bob as alice's friend", func() bool { return a.friends.IsFriend(bID) })
	if asked, err := a.forward.Ask(ctx, bID); err != nil || asked.Addr != bobAddr {
		t.Fatalf("ask bob: %+v %v", asked, err)
	}

	// A visitor signs in to alice's grain through bob.
	c := throughFriend(a, bobAddr)
	g, err := a.grains.NewGrain(ctx, a.owner(), "echo", "E")
	if err != nil {
		t.Fatal(err)
	}
	gu, _ := url.Parse(g.URL)
	for _, path := range []string{gu.RequestURI(), "/", "/"} {
		resp, err := c.Get("https://" + gu.Hostname() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 400 || path == "/" && !strings.Contains(string(body), "hello from echo") {
			t.Fatalf("%s through bob: %d %.200s", path, resp.StatusCode, body)
		}
	}

	secrets := keyBytes(t, a)
	if !testkit.ProcessHolds(t, os.Getpid(), secrets) {
		t.Fatal("the check does not find the key even in alice's own process")
	}
	if testkit.ProcessHolds(t, cmd.Process.Pid, secrets) {
		t.Fatal("bob's process memory holds alice's TLS key")
	}
	for _, p := range testkit.FilesHolding(dir, secrets) {
		t.Errorf("alice's key is in bob's %s", p)
	}
}
