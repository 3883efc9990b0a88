package node

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"erg"
	"erg/sandbox"
)

// A node killed with a grain running leaves the grain's /var image
// mounted. Started again on the same data dir it unmounts it first (and
// nothing outside its data dir), the grain serves what it wrote before the
// kill, and once the node stops its data dir is removed without EBUSY and
// no loop device is left on its images.
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

	p.stop(syscall.SIGKILL)
	if len(sandbox.ImageLoops(data)) == 0 {
		t.Fatal("the killed node left no image mounted: nothing to test")
	}
	p.start()
	// Gone before the grain starts again: the node unmounted it, and the
	// kernel frees the device a moment after.
	awaitNoLoops(t, data, "after the restart, before the grain started, the killed node's image is still on")
	if body := visit("/read?path=/var/before-kill"); !strings.Contains(body, `"data":"x"`) {
		t.Errorf("after the restart the grain reads %s", body)
	}
	if m, err := sandbox.Mounted(otherVar); err != nil || !m {
		t.Errorf("an image outside the data dir was unmounted at start: mounted %v, %v", m, err)
	}
	p.stop(syscall.SIGTERM)

	awaitNoLoops(t, data, "after the node stopped its images are still on")
	if err := os.RemoveAll(data); err != nil {
		t.Fatalf("remove the stopped node's data dir: %v", err)
	}
}

// awaitNoLoops fails the test unless, within a few seconds, no loop device
// is backed by a file under dir.
func awaitNoLoops(t *testing.T, dir, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(sandbox.ImageLoops(dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if loops := sandbox.ImageLoops(dir); len(loops) > 0 {
		t.Errorf("%s %v", msg, loops)
	}
}
