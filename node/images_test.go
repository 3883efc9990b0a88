package node

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"erg"
	"erg/sandbox"

	"golang.org/x/sys/unix"
)

// A node killed with a grain running leaves the grain's /var image
// mounted. Started again on the same data dir it unmounts it (and nothing
// outside its data dir) and mounts the image afresh, the grain serves
// what it wrote before the kill, and once the node stops its data dir is
// removed without EBUSY and no loop device is left on its images.
func TestKilledNodesImagesAreUnmountedAtStart(t *testing.T) {
	if err := sandbox.DiskImages(); err != nil {
		t.Skipf("no disk images here: %v", err)
	}
	data := t.TempDir()
	p := startErg(t, data)
	var g erg.Grain
	if err := json.Unmarshal([]byte(p.erg(false, "grain", "new", "probe", "--title", "kept", "--json")), &g); err != nil {
		t.Fatal(err)
	}
	visit := func(path string) string {
		t.Helper()
		var o erg.Grain
		if err := json.Unmarshal([]byte(p.erg(false, "grain", "open", g.ID, "--json")), &o); err != nil {
			t.Fatal(err)
		}
		w, _ := ergWeb(t, p)
		if code, body := w.get(o.URL); code != http.StatusSeeOther && code != http.StatusOK {
			t.Fatalf("login to the grain: %d %s", code, body)
		}
		code, body := w.get(strings.Split(o.URL, "/_erg")[0] + path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return body
	}
	if body := visit("/write?path=/var/before-kill"); !strings.Contains(body, `"ok":true`) {
		t.Fatalf("write: %s", body)
	}

	// Another image, mounted outside the data dir: not the node's.
	other := t.TempDir()
	otherVar := filepath.Join(other, "var")
	if err := os.Mkdir(otherVar, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.MountImage(filepath.Join(other, "var.img"), otherVar, 8<<20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sandbox.UnmountImage(otherVar) })

	varDir := filepath.Join(data, "grains", g.ID, "var")
	before := mountsAt(t, varDir)
	p.stop(syscall.SIGKILL)
	if len(before) != 1 || len(sandbox.ImageLoops(data)) == 0 {
		t.Fatalf("the killed node left mounts %v and loop devices %v: nothing to test", before, sandbox.ImageLoops(data))
	}
	// Mark the killed node's mount (noexec, which the node never sets):
	// mount ids are reused as soon as they are free, so only a mark tells
	// a new mount from the old one kept.
	if err := unix.Mount("", varDir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME|unix.MS_NOEXEC, ""); err != nil {
		t.Fatalf("mark the killed node's mount: %v", err)
	}
	if opts := mountOptions(t, varDir); len(opts) != 1 || !slices.Contains(strings.Split(opts[0], ","), "noexec") {
		t.Fatalf("the killed node's mount, marked, has options %v", opts)
	}
	p.start()
	// The node unmounted what the killed one left and mounted the image
	// again, once: a new mount, not the old one kept or one on top of it.
	if opts := mountOptions(t, varDir); len(opts) != 1 || slices.Contains(strings.Split(opts[0], ","), "noexec") {
		t.Errorf("after the restart the grain's /var has mounts with options %v; the killed node's was marked noexec", opts)
	}
	if body := visit("/read?path=/var/before-kill"); !strings.Contains(body, `"data":"x"`) {
		t.Errorf("after the restart the grain reads %s", body)
	}
	if m, err := sandbox.Mounted(otherVar); err != nil || !m {
		t.Errorf("an image outside the data dir was unmounted at start: mounted %v, %v", m, err)
	}
	p.stop(syscall.SIGTERM)

	if loops := sandbox.AwaitLoopsFreed(data, sandbox.ImageLoops(data), 5*time.Second); len(loops) > 0 {
		t.Errorf("after the node stopped its images are still on %v", loops)
	}
	if err := os.RemoveAll(data); err != nil {
		t.Fatalf("remove the stopped node's data dir: %v", err)
	}
}

// mountsAt lists the ids of the mounts at dir in this process's mount
// namespace (the node's), bottom first.
func mountsAt(t *testing.T, dir string) []string { return mountFields(t, dir, 0) }

// mountOptions lists the per-mount options of the mounts at dir, bottom
// first.
func mountOptions(t *testing.T, dir string) []string { return mountFields(t, dir, 5) }

// mountFields lists field i of mountinfo's lines for the mounts at dir.
func mountFields(t *testing.T, dir string, i int) []string {
	t.Helper()
	// thread-self: the main thread may be the one sandboxes are cloned
	// from, in a mount namespace of its own (sandbox/mounts.go).
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 5 && f[4] == dir {
			ids = append(ids, f[i])
		}
	}
	return ids
}
