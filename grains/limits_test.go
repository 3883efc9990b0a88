package grains

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"erg"
)

// A grain's CPU ceiling is the node owner's choice for it, else its app's,
// else the node's; only the owner may choose, the choice outlives a
// restart, and it reaches the grain's cgroup at its next start.
func TestGrainCPUPercent(t *testing.T) {
	s := testService(t)
	ctx := context.Background()
	g, err := s.NewGrain(ctx, owner, "echo", "cpu")
	if err != nil {
		t.Fatal(err)
	}
	ceiling := func(s *Service) int {
		t.Helper()
		rs, err := s.RunSpec(g.ID)
		if err != nil {
			t.Fatal(err)
		}
		return rs.Limits.CPUPercent
	}
	if got := ceiling(s); got != 0 {
		t.Errorf("no ceiling anywhere: %d", got)
	}
	s.cfg.CPUPercent = 30
	if got := ceiling(s); got != 30 {
		t.Errorf("the node's default: %d, want 30", got)
	}
	pct := 75
	if err := s.SetCPUPercent(ctx, bob, g.ID, &pct); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a user set a grain's CPU ceiling: %v", err)
	}
	bad := -1
	if err := s.SetCPUPercent(ctx, owner, g.ID, &bad); !errors.Is(err, erg.ErrInvalid) {
		t.Errorf("a negative ceiling: %v", err)
	}
	if err := s.SetCPUPercent(ctx, owner, "nope", &pct); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("no such grain: %v", err)
	}
	if err := s.SetCPUPercent(ctx, owner, g.ID, &pct); err != nil {
		t.Fatal(err)
	}
	if got := ceiling(s); got != 75 {
		t.Errorf("the owner's choice: %d, want 75", got)
	}
	s2, err := New(ctx, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got := ceiling(s2); got != 75 {
		t.Errorf("after a restart: %d, want 75", got)
	}
	s2.Close()

	h, _ := s.Handle(g.ID)
	get(t, h, "/write?v=x")
	sb := s.manager.sandboxOf(g.ID)
	if sb == nil {
		t.Fatal("the grain is not running")
	}
	found := false
	for _, d := range sb.CgroupPaths() {
		for f, want := range map[string]string{"cpu.max": "75000 100000", "cpu.cfs_quota_us": "75000"} {
			if b, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				found = true
				if got := strings.TrimSpace(string(b)); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
		}
	}
	if !found && strings.HasPrefix(s.cfg.Runner.CPULimits(), "on") {
		t.Errorf("no cpu limit file among %v", sb.CgroupPaths())
	}
	if err := s.SetCPUPercent(ctx, owner, g.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got := ceiling(s); got != 30 {
		t.Errorf("back to the default: %d, want 30", got)
	}
}
