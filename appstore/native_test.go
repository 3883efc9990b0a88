package appstore

import (
	"context"
	"crypto/ed25519"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestPrepareTreeAddsIncludesAndLibraries(t *testing.T) {
	host := "/bin/true"
	f, err := elf.Open(host)
	if err != nil {
		t.Skipf("no dynamic ELF %s here: %v", host, err)
	}
	var interp string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b, _ := io.ReadAll(p.Open())
			interp = string(b[:len(b)-1])
		}
	}
	f.Close()
	if interp == "" {
		t.Skipf("%s is static", host)
	}

	key, _ := GenerateKey()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	data, _ := os.ReadFile(host)
	os.WriteFile(filepath.Join(dir, "bin", "true"), data, 0o755)
	extra := filepath.Join(t.TempDir(), "share")
	os.MkdirAll(filepath.Join(extra, "sub"), 0o755)
	os.WriteFile(filepath.Join(extra, "sub", "data.txt"), []byte("included"), 0o644)
	manifest := fmt.Sprintf(`{"id":%q,"name":"True","version":1,"command":["/bin/true"],"port":8000,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer","include":[%q]}`,
		AppID(key.Public().(ed25519.PublicKey)), extra)
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644)

	tree, cleanup, err := PrepareTree(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	if tree == dir {
		t.Fatal("PrepareTree packed the tree as it was")
	}
	for _, want := range []string{interp, filepath.Join(extra, "sub", "data.txt"), "/bin/true"} {
		if _, err := os.Stat(filepath.Join(tree, want)); err != nil {
			t.Errorf("prepared tree lacks %s: %v", want, err)
		}
	}
	if missing, err := CollectELFDeps(tree, []string{"/bin/true"}); err != nil || len(missing) != 0 {
		t.Errorf("after PrepareTree the tree still misses %v (%v)", missing, err)
	}
	if _, err := os.Stat(filepath.Join(dir, interp)); err == nil {
		t.Error("PrepareTree wrote into the author's tree")
	}
	if _, err := Pack(context.Background(), tree, key, io.Discard, PackOptions{}); err != nil {
		t.Fatalf("pack the prepared tree: %v", err)
	}
	cleanup()
	if _, err := os.Stat(tree); !os.IsNotExist(err) {
		t.Errorf("cleanup left %s", tree)
	}
}

func TestPrepareTreeLeavesPlainTreesAlone(t *testing.T) {
	key, _ := GenerateKey()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "app.sh"), []byte("#!/bin/sh\n"), 0o755)
	manifest := fmt.Sprintf(`{"id":%q,"name":"Sh","version":1,"command":["/app.sh"],"port":8000,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`, AppID(key.Public().(ed25519.PublicKey)))
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644)
	tree, cleanup, err := PrepareTree(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cleanup()
	if tree != dir {
		t.Errorf("a tree with nothing to add was copied to %s", tree)
	}
}
