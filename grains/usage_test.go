package grains

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/install"
	"erg/internal/testkit"
)

// try is a GET into a grain that may fail (the app may be killed).
func try(h Handle, path string) error {
	rt, release, err := h.Acquire(context.Background())
	if err != nil {
		return err
	}
	defer release()
	req, _ := http.NewRequest("GET", "http://grain"+path, nil)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// A grain's usage is read from its sandbox's cgroup: memory it holds
// shows, CPU time grows after work, a grain near its memory limit is
// warned about in the node's log, one the memory limit stopped shows it
// stopped and keeps its last CPU time; only its owner (or the node's)
// sees any of it.
func TestGrainUsage(t *testing.T) {
	s := testService(t)
	var logged bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logged, nil))
	ctx := context.Background()
	g, h := bobsProbe(t, s)
	usage := func(who erg.User) *erg.GrainUsage {
		t.Helper()
		u, err := s.Usage(ctx, who, g.ID)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	if u := usage(bob); u.Measured || u.MemoryLimitBytes != 64<<20 || u.ProcessLimit != 64 {
		t.Errorf("before its first start: %+v", u)
	}
	if err := try(h, "/memhog?mb=40&keep=1"); err != nil {
		t.Fatal(err)
	}
	first := usage(bob)
	if !first.Measured || first.MemoryBytes < 40<<20 || first.Processes < 2 || len(first.Warnings) != 0 {
		t.Errorf("holding 40 MiB: %+v", first)
	}
	if err := try(h, "/spin?ms=400&threads=1"); err != nil {
		t.Fatal(err)
	}
	if u := usage(owner); u.CPUSeconds < first.CPUSeconds+0.02 {
		t.Errorf("after 400 ms of spinning, CPU time %.2f s -> %.2f s", first.CPUSeconds, u.CPUSeconds)
	}
	if _, err := s.Usage(ctx, erg.User{ID: "carol", Username: "carol"}, g.ID); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("another user read the grain's usage: %v", err)
	}
	if l, _ := s.Local(ctx, bob); len(l) != 1 || l[0].Usage == nil || l[0].Usage.MemoryBytes < 40<<20 {
		t.Errorf("the owner's list: %+v", l)
	}

	// Past 90% of the limit, counting what the app and its runtime hold
	// besides (more with -race).
	more := (int64(0.92*float64(first.MemoryLimitBytes)) - usage(bob).MemoryBytes + 1<<20 - 1) >> 20
	if err := try(h, "/memhog?keep=1&mb="+strconv.FormatInt(max(more, 1), 10)); err != nil {
		t.Fatal(err)
	}
	if u := usage(bob); !hasWarning(u, "memory at") {
		t.Errorf("at %d of %d bytes, no warning: %+v", u.MemoryBytes, u.MemoryLimitBytes, u.Warnings)
	}
	s.sampleAll()
	if !strings.Contains(logged.String(), "memory at") {
		t.Errorf("the node's log does not warn of the memory limit:\n%s", logged.String())
	}

	before := usage(bob).CPUSeconds
	try(h, "/memhog?mb=100") // killed on the way
	testkit.AwaitFor(t, 10*time.Second, "the grain stopped by its memory limit", func() bool {
		return hasWarning(usage(bob), "stopped by its memory limit")
	})
	u := usage(bob)
	if u.MemoryBytes != 0 || u.CPUSeconds < before || !u.Measured {
		t.Errorf("stopped: %+v, want its last CPU time (at least %.2f s) and no memory", u, before)
	}
	if !strings.Contains(string(s.manager.logOf(g.ID)), "stopped by its memory limit") {
		t.Errorf("the grain's log does not say the limit stopped it:\n%s", s.manager.logOf(g.ID))
	}
}

func hasWarning(u *erg.GrainUsage, part string) bool {
	for _, w := range u.Warnings {
		if strings.Contains(w, part) {
			return true
		}
	}
	return false
}

// A list of grains shows the sampler's figures, without reading each
// running grain's cgroup again: memory taken since the last sample shows
// after the next. A run the sampler has not seen yet is read at once (a
// grain just started has figures), and one that ended since is seen to
// have ended, why included.
func TestGrainsListUsesTheSamplersFigures(t *testing.T) {
	s := testService(t)
	s.stopUsage() // the test samples when it means to
	ctx := context.Background()
	_, h := bobsProbe(t, s)
	listed := func() *erg.GrainUsage {
		t.Helper()
		l, err := s.Local(ctx, bob)
		if err != nil || len(l) != 1 || l[0].Usage == nil {
			t.Fatalf("bob's list: %+v, %v", l, err)
		}
		return l[0].Usage
	}
	if err := try(h, "/"); err != nil {
		t.Fatal(err)
	}
	started := listed()
	if !started.Measured || started.MemoryBytes == 0 || started.Processes == 0 {
		t.Errorf("just started, the list shows %+v", started)
	}
	if err := try(h, "/memhog?mb=40&keep=1"); err != nil {
		t.Fatal(err)
	}
	if u := listed(); u.MemoryBytes >= 40<<20 {
		t.Errorf("the list read the grain's cgroup again: %d MiB before the next sample", u.MemoryBytes>>20)
	}
	s.sampleAll()
	if u := listed(); u.MemoryBytes < 40<<20 {
		t.Errorf("after a sample the list shows %d MiB, want 40 or more", u.MemoryBytes>>20)
	}
	try(h, "/memhog?mb=100") // killed on the way
	testkit.AwaitFor(t, 10*time.Second, "the list showing the grain stopped by its memory limit", func() bool {
		return hasWarning(listed(), "stopped by its memory limit")
	})
	if u := listed(); u.MemoryBytes != 0 || u.Processes != 0 || !u.Measured {
		t.Errorf("stopped: the list shows %+v", u)
	}
}

// bobsProbe installs the probe app in s and makes bob a grain of it (the
// probe's memory limit: 64 MiB), not started.
func bobsProbe(t *testing.T, s *Service) (erg.Grain, Handle) {
	t.Helper()
	ctx := context.Background()
	inst := install.New(install.Config{DB: s.db, Dir: s.cfg.PackagesDir, Lock: s.cfg.InstallLock, Log: slog.New(slog.DiscardHandler), Recorded: s.AppRecorded})
	if _, err := inst.Install(ctx, install.Tree(filepath.Join(testkit.Apps(t), "probe")), install.Options{}); err != nil {
		t.Fatal(err)
	}
	g, err := s.NewGrain(ctx, bob, "probe", "hog")
	if err != nil {
		t.Fatal(err)
	}
	h, _ := s.Handle(g.ID)
	return g, h
}
