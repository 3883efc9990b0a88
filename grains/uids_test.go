package grains

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"erg/sandbox"
)

func owned(t *testing.T, p string) (uid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Uid, fi.Mode().Perm()
}

// As root each grain gets its own uid from the runner's range, recorded:
// the same after a restart, its /var given to it at 0700, a grain from
// before per-grain uids gets one (and its files) at its next start, and a
// removed grain's uid goes to a new grain only once its storage is gone.
func TestGrainUIDs(t *testing.T) {
	s := testService(t)
	base, count, ok := s.cfg.Runner.UIDRange()
	if !ok {
		t.Skip("unprivileged: every grain runs as the node's uid")
	}
	ctx := context.Background()
	uidOf := func(id string) uint32 {
		t.Helper()
		var uid uint32
		if err := s.db.QueryRow(`SELECT uid FROM grain_uids WHERE grain_id = ?`, id).Scan(&uid); err != nil {
			t.Fatalf("grain %s has no recorded uid: %v", id, err)
		}
		return uid
	}
	a, err := s.NewGrain(ctx, owner, "echo", "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.NewGrain(ctx, owner, "echo", "b")
	if err != nil {
		t.Fatal(err)
	}
	ua, ub := uidOf(a.ID), uidOf(b.ID)
	if ua == ub || ua < base || ub < base || ua >= base+count || ub >= base+count {
		t.Fatalf("uids %d and %d, want two distinct ones in %d+%d", ua, ub, base, count)
	}
	for _, g := range []struct {
		id  string
		uid uint32
	}{{a.ID, ua}, {b.ID, ub}} {
		h, _ := s.Handle(g.id)
		get(t, h, "/write?v=x")
		if uid, mode := owned(t, filepath.Join(s.Dir(g.id), "var")); uid != g.uid || mode != 0o700 {
			t.Errorf("grain %s var: uid %d mode %v, want %d 0700", g.id, uid, mode, g.uid)
		}
	}

	// A grain from before: no row, its var the shared sandbox uid's.
	c, err := s.NewGrain(ctx, owner, "echo", "old")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`DELETE FROM grain_uids WHERE grain_id = ?`, c.ID); err != nil {
		t.Fatal(err)
	}
	cVar := filepath.Join(s.Dir(c.ID), "var")
	old := filepath.Join(cVar, "old-file")
	if err := os.WriteFile(old, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{cVar, old} {
		os.Lchown(p, sandbox.DefaultSandboxUID, sandbox.DefaultSandboxUID)
	}
	h, _ := s.Handle(c.ID)
	get(t, h, "/write?v=y")
	uc := uidOf(c.ID)
	if uid, _ := owned(t, old); uid != uc {
		t.Errorf("an old grain's file belongs to %d after its start, want its new uid %d", uid, uc)
	}

	// A restart: the same uids.
	s2, err := New(ctx, s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]uint32{a.ID: ua, b.ID: ub, c.ID: uc} {
		if got, err := s2.grainUID(ctx, id); err != nil || got != want {
			t.Errorf("after a restart grain %s has uid %d (%v), want %d", id, got, err, want)
		}
	}
	s2.Close()

	// Removed: its uid is free again, for the next grain.
	if err := s.RemoveGrain(ctx, owner, a.ID); err != nil {
		t.Fatal(err)
	}
	d, err := s.NewGrain(ctx, owner, "echo", "d")
	if err != nil {
		t.Fatal(err)
	}
	if ud := uidOf(d.ID); ud != ua {
		t.Errorf("the next grain got uid %d, want the removed grain's %d (the lowest free)", ud, ua)
	}
}
