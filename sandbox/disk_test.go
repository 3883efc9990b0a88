package sandbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

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
	img, varDir := mountedImage(t, t.TempDir(), 16<<20)
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
	img, varDir := mountedImage(t, t.TempDir(), 16<<20)
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

// A sandbox started while another's image is mounted, from scratch or
// from a zygote, holds no copy of it: unmounted, the image's loop device
// goes while that sandbox and the refilled pool run.
func TestSandboxesHoldNoOtherImage(t *testing.T) {
	if err := sandbox.DiskImages(); err != nil {
		t.Skipf("no disk images here: %v", err)
	}
	for _, zygotes := range []int{-1, 1} {
		t.Run(fmt.Sprintf("zygotes=%d", zygotes), func(t *testing.T) {
			r := newRunner(t, sandbox.Config{Zygotes: zygotes})
			root := sandboxtest.BuildProbeTree(t)
			dir := t.TempDir()
			_, varDir := mountedImage(t, dir, 16<<20)
			// The first zygote may predate the mount; the one refilled
			// after this start does not.
			for i := range 2 {
				sb := start(t, r, probeSpec(t, fmt.Sprintf("other-%d", i), root))
				waitReady(t, sb)
				if zygotes > 0 {
					if err := sandbox.WaitPool(context.Background(), r); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := sandbox.UnmountImage(varDir); err != nil {
				t.Fatal(err)
			}
			if loops := sandbox.AwaitLoopsFreed(dir, sandbox.ImageLoops(dir), 5*time.Second); len(loops) > 0 {
				t.Fatalf("the unmounted image is still on %v while the other sandboxes run", loops)
			}
		})
	}
}

// UnmountImagesUnder ends what a killed node left below its data dir (a
// mounted image, in a dir whose name has a space, and a loop device set
// up on an image but never mounted) and nothing outside it.
func TestUnmountImagesUnder(t *testing.T) {
	if err := sandbox.DiskImages(); err != nil {
		t.Skipf("no disk images here: %v", err)
	}
	data, outside := filepath.Join(t.TempDir(), "data dir"), t.TempDir()
	_, mine := mountedImage(t, filepath.Join(data, "a"), 8<<20)
	_, theirs := mountedImage(t, outside, 8<<20)
	loose := filepath.Join(data, "loose.img")
	if err := os.WriteFile(loose, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("losetup", "-f", loose).CombinedOutput(); err != nil {
		t.Skipf("losetup: %v %s", err, out)
	}
	if n := len(sandbox.ImageLoops(data)); n != 2 {
		t.Fatalf("%d loop devices under the data dir before, want 2", n)
	}
	n, err := sandbox.UnmountImagesUnder(data)
	if err != nil || n != 2 {
		t.Fatalf("UnmountImagesUnder = %d, %v; want 2, nil", n, err)
	}
	if m, _ := sandbox.Mounted(mine); m {
		t.Error("the image under the data dir is still mounted")
	}
	if m, _ := sandbox.Mounted(theirs); !m {
		t.Error("the image outside the data dir was unmounted")
	}
	if loops := sandbox.AwaitLoopsFreed(data, sandbox.ImageLoops(data), 5*time.Second); len(loops) > 0 {
		t.Errorf("loop devices left under the data dir: %v", loops)
	}
}

// AwaitLoopsFreed waits only for the devices it is given: a device still
// held under the same dir does not keep it waiting, and it returns as
// soon as the one it waits for is freed.
func TestAwaitLoopsFreed(t *testing.T) {
	if err := sandbox.DiskImages(); err != nil {
		t.Skipf("no disk images here: %v", err)
	}
	dir := t.TempDir()
	held := filepath.Join(dir, "held.img")
	if err := os.WriteFile(held, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("losetup", "-f", "--show", held).Output()
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if loops := sandbox.ImageLoops(dir); len(loops) != 1 || loops[0] != dev {
		t.Fatalf("ImageLoops = %v, want [%s]", loops, dev)
	}
	t0 := time.Now()
	if left := sandbox.AwaitLoopsFreed(dir, nil, 5*time.Second); len(left) > 0 || time.Since(t0) > time.Second {
		t.Errorf("waiting for no device returned %v after %v", left, time.Since(t0))
	}
	t0 = time.Now()
	if left := sandbox.AwaitLoopsFreed(dir, []string{dev}, 100*time.Millisecond); len(left) != 1 || time.Since(t0) < 100*time.Millisecond {
		t.Errorf("waiting 100ms for a held device returned %v after %v", left, time.Since(t0))
	}
	if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
		t.Fatalf("losetup -d: %v %s", err, out)
	}
	t0 = time.Now()
	if left := sandbox.AwaitLoopsFreed(dir, []string{dev}, 5*time.Second); len(left) > 0 || time.Since(t0) > 2*time.Second {
		t.Errorf("waiting for a freed device returned %v after %v", left, time.Since(t0))
	}
}

// mountedImage makes dir/var and mounts a new image, dir/var.img of size
// bytes, at it until the test ends.
func mountedImage(t *testing.T, dir string, size int64) (img, varDir string) {
	t.Helper()
	img, varDir = filepath.Join(dir, "var.img"), filepath.Join(dir, "var")
	if err := os.MkdirAll(varDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.MountImage(img, varDir, size); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.UnmountImage(varDir) })
	return img, varDir
}
