package sandbox_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"erg/sandbox"
	"erg/sandbox/sandboxtest"
)

// A sandbox whose /var is a 16 MiB image gets ENOSPC writing 64 MiB, and
// the host's file system and another sandbox's /var are untouched; the
// image keeps its files across an unmount and a mount, as over a node
// restart, and grows when asked.
func TestDiskImageBoundsVar(t *testing.T) {
	if err := sandbox.DiskImages(); err != nil {
		t.Skipf("no disk images here: %v", err)
	}
	r := newRunner(t, sandbox.Config{})
	root := sandboxtest.BuildProbeTree(t)
	dir := t.TempDir()
	img, varDir := filepath.Join(dir, "var.img"), filepath.Join(dir, "var")
	if err := os.Mkdir(varDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.MountImage(img, varDir, 16<<20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.UnmountImage(varDir) })
	if m, err := sandbox.Mounted(varDir); err != nil || !m {
		t.Fatalf("var dir not mounted after MountImage: %v %v", m, err)
	}
	if err := sandbox.MountImage(img, varDir, 16<<20); err != nil {
		t.Fatalf("MountImage on a mounted dir: %v", err)
	}

	other := probeSpec(t, "other", root)
	if err := os.WriteFile(filepath.Join(other.Var, "keep"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	ob := start(t, r, other)
	waitReady(t, ob)

	spec := probeSpec(t, "filler", root)
	spec.Var = varDir
	sb := start(t, r, spec)
	waitReady(t, sb)
	var res struct {
		OK      bool  `json:"ok"`
		Errno   int   `json:"errno"`
		Written int64 `json:"written"`
	}
	if err := json.Unmarshal([]byte(mustGet(t, sb, "/fill?path=/var/big&mb=64")), &res); err != nil {
		t.Fatal(err)
	}
	if res.OK || syscall.Errno(res.Errno) != syscall.ENOSPC {
		t.Fatalf("writing 64 MiB into a 16 MiB /var: ok=%v errno=%v, want ENOSPC", res.OK, syscall.Errno(res.Errno))
	}
	if res.Written > 16<<20 {
		t.Fatalf("wrote %d bytes into a 16 MiB /var", res.Written)
	}
	t.Logf("the grain wrote %d MiB before ENOSPC", res.Written>>20)
	if got := mustGet(t, ob, "/read?path=/var/keep"); !json.Valid([]byte(got)) || !strings.Contains(got, `"data":"mine"`) {
		t.Fatalf("other sandbox's /var after the fill: %s", got)
	}
	// The grain still works: a small write after deleting the big file.
	mustGet(t, sb, "/fill?path=/var/big&mb=0")
	if got := mustGet(t, sb, "/write?path=/var/small"); !strings.Contains(got, `"ok":true`) {
		t.Fatalf("write after freeing space: %s", got)
	}
	stop(t, sb)

	if err := sandbox.UnmountImage(varDir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(varDir, "small")); !os.IsNotExist(err) {
		t.Fatalf("small visible with the image unmounted: %v", err)
	}
	// A waiting zygote may still hold the file system: mounting again
	// shares it rather than opening the image twice.
	if err := sandbox.MountImage(img, varDir, 16<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(varDir, "small")); err != nil {
		t.Fatalf("file lost over an unmount and a mount: %v", err)
	}
}

// An image no one holds grows to the size asked and keeps its files.
func TestDiskImageGrows(t *testing.T) {
	if err := sandbox.DiskImages(); err != nil {
		t.Skipf("no disk images here: %v", err)
	}
	dir := t.TempDir()
	img, varDir := filepath.Join(dir, "var.img"), filepath.Join(dir, "var")
	if err := os.Mkdir(varDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.MountImage(img, varDir, 16<<20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.UnmountImage(varDir) })
	if err := os.WriteFile(filepath.Join(varDir, "small"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.UnmountImage(varDir); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.MountImage(img, varDir, 32<<20); err != nil {
		t.Fatalf("grow image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(varDir, "small")); err != nil {
		t.Fatalf("file lost over unmount, grow and mount: %v", err)
	}
	if _, size, err := sandbox.ImageUsage(varDir); err != nil || size <= 16<<20 {
		t.Fatalf("grown image is %d bytes (%v), want over 16 MiB", size, err)
	}
}
