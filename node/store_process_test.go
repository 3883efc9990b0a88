package node

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"erg"
	"erg/apppkg"
)

// startErgPeer runs `erg run` with the given bootstrap peers and waits
// until its socket answers and, if it has any, a peer is in its routing
// table.
func startErgPeer(t *testing.T, name string, bootstrap []string) *ergProcess {
	t.Helper()
	p := &ergProcess{t: t, bin: ergBinary(t), data: filepath.Join(t.TempDir(), name)}
	args := []string{"run", "--data", p.data, "--listen", "127.0.0.1:0", "--owner", "alice",
		"--p2p-listen", "/ip4/127.0.0.1/tcp/0", "--p2p-listen", "/ip4/127.0.0.1/udp/0/quic-v1"}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	p.cmd = exec.Command(p.bin, args...)
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.stop(syscall.SIGTERM) })
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			t.Log(name+":", sc.Text())
		}
	}()
	c := erg.NewClient(SocketPath(p.data))
	deadline := time.Now().Add(30 * time.Second)
	for {
		s, err := c.Status(context.Background())
		if err == nil && (len(bootstrap) == 0 || s.RoutingTable > 0) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("erg run %s did not start or join: %v %+v", name, err, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (p *ergProcess) status() erg.Status {
	p.t.Helper()
	var s struct{ Status erg.Status }
	if err := json.Unmarshal([]byte(p.erg(false, "status", "--json")), &s); err != nil {
		p.t.Fatal(err)
	}
	return s.Status
}

func TestStoreThroughTheCLI(t *testing.T) {
	pub := startErgPeer(t, "pub", nil)
	st := pub.status()
	if st.PeerID == "" || len(st.P2PAddrs) < 2 {
		t.Fatalf("status has no p2p side: %+v", st)
	}
	if out := pub.erg(false, "status"); !strings.Contains(out, st.PeerID) || !strings.Contains(out, "routing table") {
		t.Errorf("status:\n%s", out)
	}
	mid := startErgPeer(t, "mid", st.P2PAddrs[:1])
	far := startErgPeer(t, "far", mid.status().P2PAddrs[:1])

	key, _ := apppkg.GenerateKey()
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "echo.key")
	if err := apppkg.SaveKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	v1, v2 := filepath.Join(dir, "echo-1.erg"), filepath.Join(dir, "echo-2.erg")
	os.WriteFile(v1, packEcho(t, key, 1), 0o644)
	os.WriteFile(v2, packEcho(t, key, 2), 0o644)

	if out := pub.erg(true, "app", "publish", v1); !strings.Contains(out, "no signing key") {
		t.Errorf("publish without the key says: %s", out)
	}
	if out := pub.erg(false, "app", "publish", v1, "--key", keyFile, "--tag", "echo", "--tag", "Debugging"); !strings.Contains(out, "published Echo") {
		t.Errorf("publish: %s", out)
	}
	if out := far.erg(false, "store", "search", "debugging"); !strings.Contains(out, appID) || !strings.Contains(out, "Echo") {
		t.Errorf("search:\n%s", out)
	}
	if out := far.erg(false, "store", "search", "nothingmatches"); !strings.Contains(out, "no apps found") {
		t.Errorf("search for nothing:\n%s", out)
	}
	if out := far.erg(false, "store", "show", appID); !strings.Contains(out, "signature   valid") || !strings.Contains(out, "(1)") {
		t.Errorf("show:\n%s", out)
	}
	if out := far.erg(false, "app", "install", appID); !strings.Contains(out, "installed Echo") {
		t.Errorf("install from the store: %s", out)
	}
	if out := far.erg(false, "app", "ls"); !strings.Contains(out, appID) {
		t.Errorf("app ls after install:\n%s", out)
	}
	if out := far.erg(false, "app", "update", appID); !strings.Contains(out, "up to date") {
		t.Errorf("update with nothing new: %s", out)
	}

	pub.erg(false, "app", "publish", v2, "--key", keyFile, "--tag", "echo")
	if out := far.erg(false, "store", "updates"); !strings.Contains(out, "erg app update "+appID) {
		t.Errorf("updates:\n%s", out)
	}
	if out := far.erg(false, "app", "ls"); !strings.Contains(out, "update: ") || !strings.Contains(out, "(2) in the store") {
		t.Errorf("app ls does not say an update is there:\n%s", out)
	}
	if out := far.erg(false, "app", "update", appID); !strings.Contains(out, "version 2") {
		t.Errorf("update: %s", out)
	}
	if out := far.erg(true, "app", "install", appID); !strings.Contains(out, "is installed") {
		t.Errorf("installing an installed version says: %s", out)
	}
	if out := mid.erg(true, "app", "update", appID); !strings.Contains(out, "not installed") {
		t.Errorf("update of an app not installed says: %s", out)
	}
}
