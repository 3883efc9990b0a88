package lab

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/apppkg"
	"erg/nodetest"
)

// storeAcrossTheLab is scenario 7: C publishes a signed package from its
// home, and A, in another home, finds it in the store and installs it,
// all through the CLI of the real processes. The store's index and the
// package travel over the DHT and the friends' paths of the lab.
func storeAcrossTheLab(t *testing.T, w *world) {
	key, err := apppkg.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	appID := apppkg.AppID(key.Public().(ed25519.PublicKey))
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "echo.key")
	if err := apppkg.SaveKey(keyFile, key); err != nil {
		t.Fatal(err)
	}
	pkg := filepath.Join(dir, "echo-1.erg")
	if err := os.WriteFile(pkg, nodetest.PackApp(t, "echo", key, 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := w.c.CLI("app", "publish", pkg, "--key", keyFile, "--tag", "labstore"); !strings.Contains(out, "published Echo") {
		t.Fatalf("publish on C: %s", out)
	}
	// The record reaches the DHT's servers (R, and C itself) at once;
	// A's search asks them through its own routing table.
	start := time.Now()
	var rep erg.SearchReport
	nodetest.AwaitFor(t, 60*time.Second, "A's store search to find C's app", func() bool {
		rep, _ = w.a.Client().SearchStore(context.Background(), "labstore")
		return len(rep.Results) > 0 && rep.Results[0].AppID == appID
	})
	t.Logf("A found C's app in the store %v after C published it (%d peers asked)", time.Since(start).Round(time.Millisecond), rep.Peers)
	if out := w.a.CLI("store", "search", "labstore"); !strings.Contains(out, appID) || !strings.Contains(out, "Echo") {
		t.Errorf("store search on A:\n%s", out)
	}
	if out := w.a.CLI("store", "show", appID); !strings.Contains(out, "signature   valid") {
		t.Errorf("store show on A:\n%s", out)
	}
	if out := w.a.CLI("app", "install", appID); !strings.Contains(out, "installed Echo") {
		t.Errorf("install on A from the store: %s", out)
	}
	if out := w.a.CLI("app", "ls"); !strings.Contains(out, appID) {
		t.Errorf("app ls on A after the install:\n%s", out)
	}
}
