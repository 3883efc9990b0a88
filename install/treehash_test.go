package install

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A tree's hash is remembered only once its entries are older than the
// racy window, and any write to it afterwards is hashed again, even one
// that keeps the size and the modification time.
func TestTreeHashIsRememberedOnlyWhileTheTreeIsUnchanged(t *testing.T) {
	old := racyWindow
	racyWindow = 50 * time.Millisecond
	t.Cleanup(func() { racyWindow = old })
	root := t.TempDir()
	file := filepath.Join(root, "bin", "app")
	os.MkdirAll(filepath.Dir(file), 0o755)
	if err := os.WriteFile(file, []byte("version one"), 0o755); err != nil {
		t.Fatal(err)
	}
	first, err := hashTree(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := treeHashes.Load(root); ok {
		t.Fatal("a tree written just now was remembered")
	}
	time.Sleep(2 * racyWindow)
	if again, _ := hashTree(root); again != first {
		t.Fatalf("the same tree hashed to %s, then %s", first, again)
	}
	if _, ok := treeHashes.Load(root); !ok {
		t.Fatal("a settled tree was not remembered")
	}

	fi, _ := os.Stat(file)
	if err := os.WriteFile(file, []byte("version two"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(file, fi.ModTime(), fi.ModTime()) // same size, same mtime
	if changed, _ := hashTree(root); changed == first {
		t.Fatal("a rewritten file kept the tree's remembered hash")
	}
	time.Sleep(2 * racyWindow)
	os.WriteFile(filepath.Join(root, "bin", "new"), []byte("x"), 0o644)
	withNew, _ := hashTree(root)
	os.Remove(filepath.Join(root, "bin", "new"))
	if withNew == first {
		t.Fatal("an added file kept the tree's remembered hash")
	}
}
