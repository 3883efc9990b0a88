package grains

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"erg/sandbox"
)

// fakeHost is a grainHost that records what the manager told it.
type fakeHost struct {
	spec func(id string) (RunSpec, error)

	mu       sync.Mutex
	touched  []string
	released []string
}

func (h *fakeHost) startSpec(id string) (RunSpec, error) { return h.spec(id) }

func (h *fakeHost) bridge(string, *sandbox.Sandbox) {}

func (h *fakeHost) touchGrain(id string, _ time.Time) {
	h.mu.Lock()
	h.touched = append(h.touched, id)
	h.mu.Unlock()
}

func (h *fakeHost) treeReleased(root string) {
	h.mu.Lock()
	h.released = append(h.released, root)
	h.mu.Unlock()
}

// A grain whose sandbox cannot start releases the tree its start asked
// for and is not recorded as used; one without a spec touches nothing.
func TestGrainManagerTellsItsHost(t *testing.T) {
	runner, err := sandbox.NewRunner(sandbox.Config{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Skip("no sandbox here:", err)
	}
	root := filepath.Join(t.TempDir(), "missing")
	noSpec := errors.New("no such grain")
	h := &fakeHost{spec: func(id string) (RunSpec, error) {
		if id == "gone" {
			return RunSpec{}, noSpec
		}
		var s RunSpec
		s.Name, s.Root, s.Var, s.Args, s.Port = "g-"+id, root, t.TempDir(), []string{"/bin/app"}, 8000
		return s, nil
	}}
	m := newManager(runner, time.Minute, slog.New(slog.DiscardHandler), h)
	defer m.close()
	if _, _, err := m.acquire(context.Background(), "gone"); !errors.Is(err, noSpec) {
		t.Errorf("acquire without a spec: %v", err)
	}
	if _, _, err := m.acquire(context.Background(), "broken"); err == nil {
		t.Fatal("a grain with no tree started")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.touched) != 0 || len(h.released) != 1 || h.released[0] != root {
		t.Errorf("touched %v, released %v; want none and [%s]", h.touched, h.released, root)
	}
}
