package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/apppkg"
	"erg/p2p"
)

// packEcho packs the echo test app as a signed package of version v.
func packEcho(t *testing.T, key ed25519.PrivateKey, v int64) []byte {
	t.Helper()
	return packTestApp(t, "echo", key, v, "", "")
}

// packTestApp packs one of the test apps as a signed package of version
// v, signed by key; display, if set, is its display version, and icon,
// if set, an SVG icon added to the tree.
func packTestApp(t *testing.T, name string, key ed25519.PrivateKey, v int64, display, icon string) []byte {
	t.Helper()
	tree := filepath.Join(t.TempDir(), name)
	if err := os.CopyFS(tree, os.DirFS(filepath.Join(testApps(t), name))); err != nil {
		t.Fatal(err)
	}
	m, err := apppkg.ReadManifest(tree)
	if err != nil {
		t.Fatal(err)
	}
	m.ID = apppkg.AppID(key.Public().(ed25519.PublicKey))
	m.Version = v
	if display != "" {
		m.DisplayVersion = display
	}
	if icon != "" {
		os.Chmod(tree, 0o755)
		if err := os.WriteFile(filepath.Join(tree, "icon.svg"), []byte(icon), 0o644); err != nil {
			t.Fatal(err)
		}
		m.Icon = "icon.svg"
	}
	data, _ := json.Marshal(m)
	os.Chmod(filepath.Join(tree, "erg.json"), 0o644)
	if err := os.WriteFile(filepath.Join(tree, "erg.json"), []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := apppkg.Pack(context.Background(), tree, key, &buf, apppkg.PackOptions{}); err != nil {
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
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	key, _ := apppkg.GenerateKey()
	c := erg.NewClient(SocketPath(n.cfg.DataDir))

	app, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 1)))
	if err != nil {
		t.Fatal(err)
	}
	id, origin := n.newGrain(app.ID)
	if code, body := n.get(origin + "/write?v=mine"); code != 200 {
		t.Fatalf("grain of the installed package: %d %s", code, body)
	}
	spec1, _ := n.grains.RunSpec(id)

	// The same version again, and an older one, are refused and change nothing.
	before := packageDirs(t, n)
	if _, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 1))); !errors.Is(err, erg.ErrInvalid) || !strings.Contains(err.Error(), "not newer") {
		t.Errorf("reinstalling version 1: %v", err)
	}

	if _, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 2))); err != nil {
		t.Fatal(err)
	}
	spec2, _ := n.grains.RunSpec(id)
	if spec2.Root == spec1.Root {
		t.Error("the grain still points at the old package after an upgrade")
	}
	// The grain still runs on version 1, so its tree stays...
	if !slices.Contains(packageDirs(t, n), filepath.Base(spec1.Root)) {
		t.Fatal("the old package was removed while a grain still ran on it")
	}
	if code, body := n.get(origin + "/read"); code != 200 || body != "mine" {
		t.Errorf("the running grain after the upgrade = %d %q", code, body)
	}
	if err := n.grains.Stop(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	// ...and goes once no grain uses it.
	waitFor(t, 10*time.Second, "the old package to be removed", func() bool {
		return !slices.Contains(packageDirs(t, n), filepath.Base(spec1.Root))
	})
	if code, body := n.get(origin + "/read"); code != 200 || body != "mine" {
		t.Errorf("after the upgrade the grain's data = %d %q", code, body)
	}
	if root := n.grains.RunningRoot(id); root != spec2.Root {
		t.Errorf("the restarted grain does not run the new package %s", spec2.Root)
	}
	if _, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 1))); err == nil {
		t.Error("a downgrade was installed")
	}
	if got := packageDirs(t, n); len(got) != len(before) || !slices.Contains(got, filepath.Base(spec2.Root)) {
		t.Errorf("package dirs %v, want the new package in place of the old one (before: %v)", got, before)
	}

	// An upgrade while no grain runs removes the old tree at once.
	if err := n.grains.Stop(ctx, id, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.InstallPackage(ctx, bytes.NewReader(packEcho(t, key, 3))); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(packageDirs(t, n), filepath.Base(spec2.Root)) {
		t.Error("version 2's package outlived the upgrade to version 3 with no grain on it")
	}
}

// TestAppsDirInstallsPackages starts a node three times on one data dir with
// --apps pointing at package files: the first start installs, the second
// finds nothing newer and changes nothing, the third upgrades.
// Not parallel: it restarts a node on its data dir with Start, which
// meets the previous run's lock while another test forks (see
// testkit.LockHeld).
func TestAppsDirInstallsPackages(t *testing.T) {
	key, _ := apppkg.GenerateKey()
	apps := t.TempDir()
	data := filepath.Join(t.TempDir(), "data")
	pkgFile := filepath.Join(apps, "echo.erg")
	if err := os.WriteFile(pkgFile, packEcho(t, key, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	// Not packages, so ignored: a stray file and a directory without erg.json.
	os.WriteFile(filepath.Join(apps, "README"), []byte("hi"), 0o644)
	os.Mkdir(filepath.Join(apps, "empty"), 0o755)
	start := func() (*testNode, erg.App) {
		n := startNode(t, func(c *Config) { c.DataDir, c.AppsDir = data, apps })
		list, err := n.installer.Apps(context.Background())
		if err != nil || len(list) != 1 {
			t.Fatalf("apps after start: %v %v", list, err)
		}
		return n, list[0]
	}
	n, app := start()
	if app.ID != apppkg.AppID(key.Public().(ed25519.PublicKey)) || app.Version != 1 {
		t.Fatalf("installed %+v", app)
	}
	dirs := packageDirs(t, n)
	n.Close()

	n, app = start()
	if app.Version != 1 || !slices.Equal(packageDirs(t, n), dirs) {
		t.Errorf("a second start changed the install: %+v, dirs %v (were %v)", app, packageDirs(t, n), dirs)
	}
	n.Close()

	if err := os.WriteFile(pkgFile, packEcho(t, key, 2), 0o644); err != nil {
		t.Fatal(err)
	}
	n, app = start()
	if app.Version != 2 {
		t.Errorf("after a newer package the app is %+v", app)
	}
	if got := packageDirs(t, n); len(got) != 1 || slices.Equal(got, dirs) {
		t.Errorf("package dirs %v: want only the new version's (old: %v)", got, dirs)
	}
	n.Close()

	// A tampered package stops the start with an error naming the file.
	pkg := packEcho(t, key, 3)
	pkg[len(pkg)/2] ^= 0x55
	os.WriteFile(pkgFile, pkg, 0o644)
	_, err := Start(context.Background(), Config{DataDir: data, AppsDir: apps, Listen: "127.0.0.1:0", P2PListen: p2p.Loopback, Log: slog.New(slog.DiscardHandler)})
	if err == nil || !strings.Contains(err.Error(), "echo.erg") {
		t.Errorf("start with a tampered package: %v", err)
	}
}

// TestInstallReportsProgress installs through the API's event stream, as
// `erg app install` does: the node reports verifying and then unpacking,
// each rising to its total, and then the app; a bad package ends the
// stream with the refusal.
func TestInstallReportsProgress(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	c := erg.NewClient(SocketPath(n.cfg.DataDir))
	key, _ := apppkg.GenerateKey()
	pkg := packEcho(t, key, 1)

	var steps []erg.InstallStep
	app, err := c.InstallPackageProgress(ctx, bytes.NewReader(pkg), func(s erg.InstallStep) { steps = append(steps, s) })
	if err != nil {
		t.Fatal(err)
	}
	if app.ID != apppkg.AppID(key.Public().(ed25519.PublicKey)) {
		t.Errorf("installed %+v", app)
	}
	last := map[string]erg.InstallStep{}
	var order []string
	for _, s := range steps {
		prev, seen := last[s.Phase]
		if !seen {
			order = append(order, s.Phase)
		}
		if seen && (s.Done < prev.Done || s.Total != prev.Total) || s.Done > s.Total {
			t.Errorf("step %+v after %+v", s, prev)
		}
		last[s.Phase] = s
	}
	if !slices.Equal(order, []string{"verifying", "unpacking"}) {
		t.Errorf("phases %v, want verifying then unpacking", order)
	}
	for phase, s := range last {
		if s.Done != s.Total || s.Total == 0 {
			t.Errorf("%s ended at %d of %d", phase, s.Done, s.Total)
		}
	}
	t.Logf("%d progress events for a %d MB package", len(steps), len(pkg)>>20)

	bad := packEcho(t, key, 2)
	bad[len(bad)/2] ^= 0x55
	before := packageDirs(t, n)
	if _, err := c.InstallPackageProgress(ctx, bytes.NewReader(bad), nil); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("tampered package through the event stream: %v", err)
	}
	if after := packageDirs(t, n); !slices.Equal(after, before) {
		t.Errorf("package dirs %v after a refused install, were %v", after, before)
	}
}
