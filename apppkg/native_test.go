package apppkg

import (
	"context"
	"crypto/ed25519"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
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
	os.Symlink("../sub", filepath.Join(extra, "sub", "again")) // a link to a dir, as zoneinfo has
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
	for _, want := range []string{interp, filepath.Join(extra, "sub", "data.txt"), filepath.Join(extra, "sub", "again", "data.txt"), "/bin/true"} {
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

// TestPrepareTreeCopiesFilesList packs exactly what erg-files.list names:
// a relative symlink stays a symlink and brings its target, an absolute one
// becomes a copy, a directory comes empty, and the dev sandbox's scratch
// dir stays out.
func TestPrepareTreeCopiesFilesList(t *testing.T) {
	key, _ := GenerateKey()
	host := t.TempDir()
	os.MkdirAll(filepath.Join(host, "lib", "sub"), 0o755)
	os.WriteFile(filepath.Join(host, "lib", "sub", "unlisted.txt"), []byte("no"), 0o644)
	os.WriteFile(filepath.Join(host, "lib", "real.txt"), []byte("real"), 0o644)
	os.Symlink("real.txt", filepath.Join(host, "lib", "link"))
	os.Symlink(filepath.Join(host, "lib", "real.txt"), filepath.Join(host, "lib", "abslink"))
	dir := t.TempDir()
	manifest := fmt.Sprintf(`{"id":%q,"name":"Listed","version":1,"command":["/bin/x"],"port":8000,
		"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`,
		AppID(key.Public().(ed25519.PublicKey)))
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644)
	os.MkdirAll(filepath.Join(dir, DevDir, "var"), 0o755)
	os.WriteFile(filepath.Join(dir, DevDir, "var", "scratch"), []byte("dev data"), 0o644)
	list := []string{filepath.Join(host, "lib", "link"), filepath.Join(host, "lib", "abslink"), filepath.Join(host, "lib", "sub")}
	if err := WriteFilesList(filepath.Join(dir, FilesListFile), list); err != nil {
		t.Fatal(err)
	}

	tree, cleanup, err := PrepareTree(dir, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	in := func(p string) string { return filepath.Join(tree, p) }
	if target, err := os.Readlink(in(filepath.Join(host, "lib", "link"))); err != nil || target != "real.txt" {
		t.Errorf("link: %q %v, want a symlink to real.txt", target, err)
	}
	if b, err := os.ReadFile(in(filepath.Join(host, "lib", "real.txt"))); err != nil || string(b) != "real" {
		t.Errorf("the link's target: %q %v", b, err)
	}
	if fi, err := os.Lstat(in(filepath.Join(host, "lib", "abslink"))); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("absolute link: %v %v, want a copied file", fi, err)
	}
	if fi, err := os.Stat(in(filepath.Join(host, "lib", "sub"))); err != nil || !fi.IsDir() {
		t.Errorf("listed dir: %v", err)
	}
	if _, err := os.Lstat(in(filepath.Join(host, "lib", "sub", "unlisted.txt"))); err == nil {
		t.Error("a file under a listed dir came along unlisted")
	}
	if _, err := os.Lstat(in(DevDir)); err == nil {
		t.Errorf("the tree holds %s", DevDir)
	}
	if _, err := Pack(context.Background(), tree, key, io.Discard, PackOptions{}); err != nil {
		t.Errorf("pack: %v", err)
	}
}

// TestPrepareTreeRefusesBadFilesLists checks each bad list is refused with
// a clear error, leaving nothing behind.
func TestPrepareTreeRefusesBadFilesLists(t *testing.T) {
	key, _ := GenerateKey()
	host := t.TempDir()
	secret := filepath.Join(host, "secret")
	os.WriteFile(secret, []byte("private"), 0o600)
	for _, c := range []struct{ list, want string }{
		{"# ok\n/usr\nrelative/path\n", ":3: \"relative/path\" is not a clean absolute path"},
		{"/usr/../etc\n", "not a clean absolute path"},
		{"/\n", "other than /"},
		{filepath.Join(host, "gone") + "\n", "not on this host any more"},
		{secret + "\n", "not readable by everyone"},
	} {
		dir := t.TempDir()
		manifest := fmt.Sprintf(`{"id":%q,"name":"Listed","version":1,"command":["/bin/x"],"port":8000,
			"roles":[{"name":"viewer","permissions":["read"]}],"ownerRole":"viewer"}`,
			AppID(key.Public().(ed25519.PublicKey)))
		os.WriteFile(filepath.Join(dir, ManifestFile), []byte(manifest), 0o644)
		os.WriteFile(filepath.Join(dir, FilesListFile), []byte(c.list), 0o644)
		tmp := t.TempDir()
		_, _, err := PrepareTree(dir, tmp)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("list %q: err %v, want %q", c.list, err, c.want)
		}
		if left, _ := os.ReadDir(tmp); len(left) != 0 {
			t.Errorf("list %q left %d entries in the temp dir", c.list, len(left))
		}
	}
}
