package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"erg"
	"erg/apppkg"
)

// TestNativeCProgramRunsInAGrain packs a dynamically linked C web server
// with the loader and libraries its ELF headers name, installs the signed
// package, and serves a request from it in a sandboxed grain.
func TestNativeCProgramRunsInAGrain(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to build the C program")
	}
	key, _ := apppkg.GenerateKey()
	tree := filepath.Join(t.TempDir(), "chello")
	os.MkdirAll(filepath.Join(tree, "bin"), 0o755)
	src := filepath.Join(repoRoot(t), "node", "testdata", "chello", "chello.c")
	if out, err := exec.Command(gcc, "-O2", "-o", filepath.Join(tree, "bin", "chello"), src, "-lm").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v %s", err, out)
	}
	manifest := fmt.Sprintf(`{"id":%q,"name":"C hello","version":1,"command":["/bin/chello"],"port":8000,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`,
		apppkg.AppID(key.Public().(ed25519.PublicKey)))
	os.WriteFile(filepath.Join(tree, "erg.json"), []byte(manifest), 0o644)

	staged, cleanup, err := apppkg.PrepareTree(tree, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	var pkg bytes.Buffer
	if _, err := apppkg.Pack(context.Background(), staged, key, &pkg, apppkg.PackOptions{}); err != nil {
		t.Fatal(err)
	}

	n := startNode(t, nil)
	app, err := erg.NewClient(SocketPath(n.cfg.DataDir)).InstallPackage(context.Background(), &pkg)
	if err != nil {
		t.Fatal(err)
	}
	g, err := n.grains.NewGrain(context.Background(), n.owner(), app.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	code, body := n.get(g.URL)
	if code != 200 || !strings.HasPrefix(body, "hello from C 6") {
		log, _ := n.grains.Log(context.Background(), n.owner(), g.ID)
		t.Fatalf("GET = %d %q; grain log:\n%s", code, body, log)
	}
}
