package grains

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"erg"
	"erg/sandbox"
)

// A grain on a 16 MiB image: its app gets ENOSPC writing 64 MiB while
// another grain's data stays and both keep serving; the bound is the
// owner's to change; it holds over a restart of the service; a restore
// past the user's bound or the disk's floor is refused before anything
// is made; removing the grain removes its image.
func TestGrainDiskBound(t *testing.T) {
	s := testServiceWith(t, func(c *Config) { c.Disk.GrainMB = 16 })
	if !s.disk.images {
		t.Skip("no disk images here (not root, or no loop devices or e2fsprogs)")
	}
	ctx := context.Background()
	a, err := s.NewGrain(ctx, owner, "echo", "full")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.NewGrain(ctx, owner, "echo", "other")
	if err != nil {
		t.Fatal(err)
	}
	ha, _ := s.Handle(a.ID)
	hb, _ := s.Handle(b.ID)
	if body := get(t, hb, "/write?v=kept"); body != "" {
		t.Fatalf("write = %q", body)
	}
	if body := get(t, ha, "/fill?mb=64"); !strings.Contains(body, "no space left on device") {
		t.Fatalf("filling 64 MiB into a 16 MiB grain: %q, want ENOSPC", body)
	}
	if body := get(t, hb, "/read"); body != "kept" {
		t.Fatalf("the other grain reads %q after the fill", body)
	}
	if body := get(t, ha, "/fill?mb=4"); body != "" {
		t.Fatalf("the full grain, after freeing its space: %q", body)
	}
	used, bound, enforced, err := s.DiskUse(a.ID)
	if err != nil || !enforced || bound != 16<<20 || used < 4<<20 {
		t.Fatalf("DiskUse = %d, %d, %v, %v; want 4 MiB or more of 16, enforced", used, bound, enforced, err)
	}

	if err := s.SetDiskMB(ctx, bob, a.ID, new(32)); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a user set a grain's disk bound: %v", err)
	}
	if err := s.SetDiskMB(ctx, owner, a.ID, new(2)); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("a 2 MiB bound: %v", err)
	}
	if err := s.SetDiskMB(ctx, owner, a.ID, new(32)); err != nil {
		t.Fatal(err)
	}
	if d, err := s.DiskOf(owner, a.ID); err != nil || d.OwnerMB == nil || *d.OwnerMB != 32 || d.BoundBytes != 32<<20 || !d.Enforced {
		t.Errorf("DiskOf after SetDiskMB 32 = %+v, %v", d, err)
	}
	if _, err := s.DiskOf(bob, a.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("another user read the grain's disk: %v", err)
	}

	// Restores: a 4 MiB grain's backup zips to a few KiB but unpacks to 4
	// MiB, which is what is counted.
	var zip bytes.Buffer
	if err := s.Backup(ctx, owner, a.ID, &zip); err != nil {
		t.Fatal(err)
	}
	before := s.Count()
	ents, _ := os.ReadDir(s.cfg.Dir)
	s.cfg.Disk.UserMB = 6
	if _, err := s.Restore(ctx, owner, bytes.NewReader(zip.Bytes())); !errors.Is(err, erg.ErrTooLarge) || !strings.Contains(err.Error(), "together") {
		t.Errorf("a restore past the user's bound (%d bytes zipped): %v", zip.Len(), err)
	}
	s.cfg.Disk.UserMB = 0
	s.cfg.Disk.FloorMB = 1 << 30
	if _, err := s.Restore(ctx, owner, bytes.NewReader(zip.Bytes())); !errors.Is(err, erg.ErrTooLarge) || !strings.Contains(err.Error(), "floor") {
		t.Errorf("a restore past the disk's floor: %v", err)
	}
	s.cfg.Disk.FloorMB = 1
	if after, _ := os.ReadDir(s.cfg.Dir); s.Count() != before || len(after) != len(ents) {
		t.Errorf("refused restores left grains (%d, was %d) or storage (%d dirs, was %d)", s.Count(), before, len(after), len(ents))
	}
	r, err := s.Restore(ctx, owner, bytes.NewReader(zip.Bytes()))
	if err != nil {
		t.Fatalf("a restore within the bounds: %v", err)
	}
	if used, _, enforced, err := s.DiskUse(r.ID); err != nil || !enforced || used < 4<<20 {
		t.Errorf("restored grain: DiskUse %d, enforced %v, %v", used, enforced, err)
	}

	// The new bound waits for the grain's next start: the running
	// grain's image keeps its size.
	if _, size, err := sandbox.ImageUsage(s.varDir(a.ID)); err != nil || size > 16<<20 {
		t.Fatalf("the running grain's image is %d bytes right after its bound rose to 32 MiB (%v), want it unchanged", size, err)
	}

	// A restart of the service: the grains, their data and bounds stay.
	// The node's start mounts every image at its bound (mountAll), which
	// resizes this one: nothing held it once the old service had stopped
	// its sandbox.
	s.Close()
	s2, err := New(ctx, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s2.Close)
	if _, size, err := sandbox.ImageUsage(s2.varDir(a.ID)); err != nil || size <= 16<<20 {
		t.Fatalf("the grain's image is %d bytes after the node's start at a 32 MiB bound (%v)", size, err)
	}
	ha, _ = s2.Handle(a.ID)
	if body := get(t, ha, "/fill?mb=20"); body != "" {
		t.Errorf("20 MiB into the grain raised to 32 MiB: %q", body)
	}
	if body := get(t, ha, "/fill?mb=64"); !strings.Contains(body, "no space left on device") {
		t.Errorf("64 MiB into a 32 MiB grain after a restart: %q, want ENOSPC", body)
	}
	hb, _ = s2.Handle(b.ID)
	if body := get(t, hb, "/read"); body != "kept" {
		t.Errorf("after a restart the other grain reads %q", body)
	}
	if err := s2.Remove(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s2.imagePath(a.ID)); !os.IsNotExist(err) {
		t.Errorf("the removed grain's image: %v", err)
	}
}

// A removed grain's image is gone at once, its loop device and its file,
// though another grain's sandbox and a zygote were started while it was
// mounted: neither holds a copy of it.
func TestRemovedGrainFreesItsImage(t *testing.T) {
	s := testServiceWith(t, func(c *Config) {
		c.Disk.GrainMB = 64
		// A file system of its own, which no other test writes to while
		// this one reads its free space.
		c.Dir = t.TempDir()
		if err := unix.Mount("tmpfs", c.Dir, "tmpfs", 0, "size=256m"); err != nil {
			t.Skip("no tmpfs of its own for the grains here:", err)
		}
		t.Cleanup(func() { unix.Unmount(c.Dir, unix.MNT_DETACH) })
	})
	if !s.disk.images {
		t.Skip("no disk images here (not root, or no loop devices or e2fsprogs)")
	}
	ctx := context.Background()
	a, err := s.NewGrain(ctx, owner, "echo", "removed")
	if err != nil {
		t.Fatal(err)
	}
	ha, _ := s.Handle(a.ID)
	if body := get(t, ha, "/fill?mb=32"); body != "" {
		t.Fatalf("fill: %q", body)
	}
	b, err := s.NewGrain(ctx, owner, "echo", "stays")
	if err != nil {
		t.Fatal(err)
	}
	hb, _ := s.Handle(b.ID)
	if body := get(t, hb, "/write?v=kept"); body != "" {
		t.Fatalf("write = %q", body)
	}
	dir := s.Dir(a.ID)
	if len(sandbox.ImageLoops(dir)) != 1 {
		t.Fatalf("grain %s's image is on loop devices %v, want one", a.ID, sandbox.ImageLoops(dir))
	}
	free, _, _ := sandbox.FreeSpace(s.cfg.Dir)
	if err := s.Remove(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the removed grain's dir: %v", err)
	}
	if loops := sandbox.AwaitLoopsFreed(dir, sandbox.ImageLoops(dir), 5*time.Second); len(loops) > 0 {
		t.Fatalf("the removed grain's image is still on %v while grain %s runs", loops, b.ID)
	}
	// The 32 MiB it filled come back to the disk.
	after, _, _ := sandbox.FreeSpace(s.cfg.Dir)
	if gained := after - free; gained < 32<<20 {
		t.Errorf("free space on the grains' disk grew by %d MiB after removing a grain that filled 32 MiB", gained>>20)
	}
	if !s.Running(b.ID) {
		t.Error("the other grain stopped")
	}
	if body := get(t, hb, "/read"); body != "kept" {
		t.Errorf("the other grain reads %q", body)
	}
}

// Where the kernel cannot bound /var (here: images turned off, as on an
// unprivileged node) the node measures it: a grain over its bound is
// stopped with a line in its log saying why, does not start again until
// it is under, and a restore bigger than the bound is refused up front.
func TestGrainDiskMeasured(t *testing.T) {
	s := testServiceWith(t, func(c *Config) {
		c.Disk = DiskConfig{GrainMB: 8, NoImages: true, Check: 50 * time.Millisecond}
	})
	ctx := context.Background()
	a, err := s.NewGrain(ctx, owner, "echo", "measured")
	if err != nil {
		t.Fatal(err)
	}
	if s.hasImage(a.ID) {
		t.Fatal("a grain got an image with images turned off")
	}
	h, _ := s.Handle(a.ID)
	// The node may stop it while it writes: the answer does not matter.
	if rt, release, err := h.Acquire(ctx); err == nil {
		req, _ := http.NewRequest("GET", "http://grain/fill?mb=12", nil)
		if resp, err := rt.RoundTrip(req); err == nil {
			resp.Body.Close()
		}
		release()
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Running(a.ID) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s.Running(a.ID) {
		t.Fatal("a grain 4 MiB over its bound still runs")
	}
	if log := string(s.manager.logOf(a.ID)); !strings.Contains(log, "more than its bound of 8 MiB") {
		t.Errorf("the grain's log does not say why it stopped: %q", log)
	}
	if _, _, err := h.Acquire(ctx); !errors.Is(err, erg.ErrTooLarge) {
		t.Errorf("a start over the bound: %v", err)
	}
	var zip bytes.Buffer
	if err := s.Backup(ctx, owner, a.ID, &zip); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Restore(ctx, owner, bytes.NewReader(zip.Bytes())); !errors.Is(err, erg.ErrTooLarge) || !strings.Contains(err.Error(), "more than the grain's 8 MiB") {
		t.Errorf("a restore past the grain's bound: %v", err)
	}
	if s.Count() != 1 {
		t.Errorf("%d grains after a refused restore", s.Count())
	}
	// Raised, it starts again.
	if err := s.SetDiskMB(ctx, owner, a.ID, new(64)); err != nil {
		t.Fatal(err)
	}
	if body := get(t, h, "/read"); body == "" {
		t.Error("the grain does not answer after its bound was raised")
	}
}
