package nodetest_test

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"erg/apppkg"
	"erg/nodetest"
)

// storePeer runs `erg run` with no apps, p2p on loopback TCP and QUIC and
// the given bootstrap peers, and waits until, if it has any, a peer is in
// its routing table.
func storePeer(env *nodetest.Env, t *testing.T, name string, bootstrap []string) *nodetest.Node {
	t.Helper()
	p := env.Process(name, nodetest.Anonymous(), nodetest.NoApps(), nodetest.Bootstrap(bootstrap...),
		nodetest.P2PListen("/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"))
	if len(bootstrap) > 0 {
		nodetest.Await(t, name+" to join the DHT", func() bool {
			s, err := p.Client().Status(context.Background())
			return err == nil && s.RoutingTable > 0
		})
	}
	return p
}

func TestStoreThroughTheCLI(t *testing.T) {
	t.Parallel()
	env := nodetest.New(t)
	pub := storePeer(env, t, "pub", nil)
	st := pub.Status()
	if st.PeerID == "" || len(st.P2PAddrs) < 2 {
		t.Fatalf("status has no p2p side: %+v", st)
	}
	if out := pub.CLI("status"); !strings.Contains(out, st.PeerID) || !strings.Contains(out, "routing table") {
		t.Errorf("status:\n%s", out)
	}
	mid := storePeer(env, t, "mid", st.P2PAddrs[:1])
	far := storePeer(env, t, "far", mid.Status().P2PAddrs[:1])

	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "echo.key")
	if err := apppkg.SaveKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	v1, v2 := filepath.Join(dir, "echo-1.erg"), filepath.Join(dir, "echo-2.erg")
	os.WriteFile(v1, nodetest.PackApp(t, "echo", key, 1), 0o644)
	os.WriteFile(v2, nodetest.PackApp(t, "echo", key, 2), 0o644)

	if out := pub.CLIFails("app", "publish", v1); !strings.Contains(out, "no signing key") {
		t.Errorf("publish without the key says: %s", out)
	}
	if out := pub.CLI("app", "publish", v1, "--key", keyFile, "--tag", "echo", "--tag", "Debugging"); !strings.Contains(out, "published Echo") {
		t.Errorf("publish: %s", out)
	}
	if out := far.CLI("store", "search", "debugging"); !strings.Contains(out, appID) || !strings.Contains(out, "Echo") {
		t.Errorf("search:\n%s", out)
	}
	if out := far.CLI("store", "search", "nothingmatches"); !strings.Contains(out, "no apps found") {
		t.Errorf("search for nothing:\n%s", out)
	}
	if out := far.CLI("store", "show", appID); !strings.Contains(out, "signature   valid") || !strings.Contains(out, "(1)") {
		t.Errorf("show:\n%s", out)
	}
	if out := far.CLI("app", "install", appID); !strings.Contains(out, "installed Echo") {
		t.Errorf("install from the store: %s", out)
	}
	if out := far.CLI("app", "ls"); !strings.Contains(out, appID) {
		t.Errorf("app ls after install:\n%s", out)
	}
	if out := far.CLI("app", "update", appID); !strings.Contains(out, "up to date") {
		t.Errorf("update with nothing new: %s", out)
	}

	pub.CLI("app", "publish", v2, "--key", keyFile, "--tag", "echo")
	if out := far.CLI("store", "updates"); !strings.Contains(out, "erg app update "+appID) {
		t.Errorf("updates:\n%s", out)
	}
	if out := far.CLI("app", "ls"); !strings.Contains(out, "update: ") || !strings.Contains(out, "(2) in the store") {
		t.Errorf("app ls does not say an update is there:\n%s", out)
	}
	if out := far.CLI("app", "update", appID); !strings.Contains(out, "version 2") {
		t.Errorf("update: %s", out)
	}
	if out := far.CLIFails("app", "install", appID); !strings.Contains(out, "is installed") {
		t.Errorf("installing an installed version says: %s", out)
	}
	if out := mid.CLIFails("app", "update", appID); !strings.Contains(out, "not installed") {
		t.Errorf("update of an app not installed says: %s", out)
	}
}
