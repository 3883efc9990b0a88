package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"erg/appstore"
	"erg/webui"
)

// packEcho packs the echo test app as a signed package of version v.
func packEcho(t *testing.T, key ed25519.PrivateKey, v int64) []byte {
	t.Helper()
	src := filepath.Join(testApps(t), "echo")
	tree := filepath.Join(t.TempDir(), "echo")
	if err := os.CopyFS(tree, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	m, err := appstore.ReadManifest(tree)
	if err != nil {
		t.Fatal(err)
	}
	m.ID = appstore.AppID(key.Public().(ed25519.PublicKey))
	m.Version = v
	data, _ := jsonString(m)
	os.Chmod(filepath.Join(tree, "erg.json"), 0o644)
	if err := os.WriteFile(filepath.Join(tree, "erg.json"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := appstore.Pack(context.Background(), tree, key, &buf, appstore.PackOptions{}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func packageDirs(t *testing.T, n *testNode) []string {
	entries, _ := os.ReadDir(filepath.Join(n.cfg.DataDir, packagesDir))
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestInstallAndUpgradeSignedPackage(t *testing.T) {
	n := startNode(t, nil)
	ctx := context.Background()
	key, _ := appstore.GenerateKey()
	c := webui.NewClient(SocketPath(n.cfg.DataDir))

	app, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 1)))
	if err != nil {
		t.Fatal(err)
	}
	id, origin := n.newGrain(app.ID)
	if code, body := n.get(origin + "/write?v=mine"); code != 200 {
		t.Fatalf("grain of the installed package: %d %s", code, body)
	}
	spec1, _ := n.runSpec(id)

	// The same version again, and an older one, are refused and change nothing.
	before := packageDirs(t, n)
	if _, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 1))); !errors.Is(err, webui.ErrInvalid) || !strings.Contains(err.Error(), "not newer") {
		t.Errorf("reinstalling version 1: %v", err)
	}

	if _, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 2))); err != nil {
		t.Fatal(err)
	}
	spec2, _ := n.runSpec(id)
	if spec2.Root == spec1.Root {
		t.Error("the grain still points at the old package after an upgrade")
	}
	if err := n.grains.stop(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	if code, body := n.get(origin + "/read"); code != 200 || body != "mine" {
		t.Errorf("after the upgrade the grain's data = %d %q", code, body)
	}
	if _, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 1))); err == nil {
		t.Error("a downgrade was installed")
	}
	if got := len(packageDirs(t, n)); got != len(before)+1 {
		t.Errorf("package dirs: %d, want %d", got, len(before)+1)
	}
}

func TestTamperedPackageLeavesNothing(t *testing.T) {
	n := startNode(t, nil)
	ctx := context.Background()
	key, _ := appstore.GenerateKey()
	pkg := packEcho(t, key, 1)
	pkg[len(pkg)/2] ^= 0x55
	before := packageDirs(t, n)
	apps, _ := n.Apps(ctx)

	_, err := webui.NewClient(SocketPath(n.cfg.DataDir)).InstallPackage(ctx, bytes.NewReader(pkg))
	if !errors.Is(err, webui.ErrInvalid) {
		t.Fatalf("tampered package: %v", err)
	}
	if after := packageDirs(t, n); len(after) != len(before) {
		t.Errorf("package dirs %v, before %v", after, before)
	}
	if after, _ := n.Apps(ctx); len(after) != len(apps) {
		t.Errorf("apps %d, before %d", len(after), len(apps))
	}
	if tmp, _ := os.ReadDir(filepath.Join(n.cfg.DataDir, "tmp")); len(tmp) != 0 {
		t.Errorf("upload left %d temp files", len(tmp))
	}
}
