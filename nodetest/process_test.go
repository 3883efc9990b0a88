package nodetest_test

import (
	"context"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	_ "modernc.org/sqlite"

	"erg"
	"erg/apppkg"
	"erg/nodetest"
)

func TestCLIAgainstARunningNode(t *testing.T) {
	t.Parallel()
	p := nodetest.New(t).Process("data", nodetest.Anonymous())

	if out := p.CLI("status"); !strings.Contains(out, "sandbox") || !strings.Contains(out, "notes") {
		t.Errorf("status:\n%s", out)
	}
	var g erg.Grain
	if err := json.Unmarshal([]byte(p.CLI("grain", "new", "notes", "--title", "Groceries", "--json")), &g); err != nil {
		t.Fatal(err)
	}
	if g.Title != "Groceries" || !strings.Contains(g.URL, "token=") {
		t.Errorf("grain new --json = %+v", g)
	}
	if out := p.CLI("grain", "ls"); !strings.Contains(out, g.ID) || !strings.Contains(out, "Groceries") {
		t.Errorf("grain ls:\n%s", out)
	}
	if out := p.CLI("grain", "open", g.ID); !strings.Contains(out, "g-"+g.ID) {
		t.Errorf("grain open: %s", out)
	}
	if out := p.CLIFails("grain", "new", "nosuchapp"); !strings.Contains(out, `no app "nosuchapp"`) {
		t.Errorf("grain new of a missing app says: %s", out)
	}
	p.CLI("grain", "rm", g.ID)
	if out := p.CLI("grain", "ls", "--json"); strings.TrimSpace(out) != "[]" {
		t.Errorf("grain ls after rm: %s", out)
	}
	if out := p.CLIFails("grain", "rm", g.ID); !strings.Contains(out, "no grain") {
		t.Errorf("rm of a removed grain says: %s", out)
	}
	key, _ := apppkg.GenerateKey()
	pkgFile := filepath.Join(t.TempDir(), "echo.erg")
	os.WriteFile(pkgFile, nodetest.PackApp(t, "echo", key, 1), 0o644)
	if out := p.CLI("app", "install", pkgFile); !strings.Contains(out, "installed Echo") {
		t.Errorf("app install: %s", out)
	}
	if out := p.CLIFails("app", "install", pkgFile); !strings.Contains(out, "not newer") {
		t.Errorf("installing the same version again says: %s", out)
	}
	if out := p.CLI("app", "ls"); !strings.Contains(out, apppkg.AppID(key.Public().(ed25519.PublicKey))) {
		t.Errorf("app ls:\n%s", out)
	}

	p.Stop()
	if out := p.CLIFails("status"); !strings.Contains(out, "erg run") {
		t.Errorf("status without a node says: %s", out)
	}
	if fi, err := os.Stat(filepath.Join(p.DataDir, "identity.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("identity.key: %v %v", fi.Mode(), err)
	}
}

func TestKillingTheNodeLosesNoCommittedMetadata(t *testing.T) {
	t.Parallel()
	p := nodetest.New(t).Process("data", nodetest.Anonymous())
	c := p.Client()

	var mu sync.Mutex
	var acked []string
	ackedN := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				g, err := c.NewGrain(ctx, "echo", "")
				if err != nil {
					return // the node died under us
				}
				mu.Lock()
				acked = append(acked, g.ID)
				mu.Unlock()
			}
		}()
	}
	// Kill the node in the middle of the writes, once a good number of
	// them are committed.
	nodetest.Await(t, "20 grains created", func() bool { return ackedN() >= 20 })
	p.Kill()
	cancel()
	wg.Wait()
	if len(acked) < 5 {
		t.Fatalf("only %d grains created before the kill", len(acked))
	}

	db, err := sql.Open("sqlite", filepath.Join(p.DataDir, "erg.db"))
	if err != nil {
		t.Fatal(err)
	}
	var check string
	db.QueryRow("PRAGMA integrity_check").Scan(&check)
	db.Close()
	if check != "ok" {
		t.Fatalf("integrity_check after SIGKILL: %s", check)
	}

	p.Restart()
	gs, err := c.Grains(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, g := range gs {
		have[g.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("grain %s was acknowledged but is gone after SIGKILL", id)
		}
	}
	t.Logf("%d grains acknowledged before SIGKILL, all present", len(acked))
}
