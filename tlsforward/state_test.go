package tlsforward

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// TestSaveKeepsTheLaterState: copies of the state are written outside
// the lock, so two saves may reach the file in either order; the file
// ends with the later copy.
func TestSaveKeepsTheLaterState(t *testing.T) {
	file := filepath.Join(t.TempDir(), "state.json")
	s := &Service{cfg: Config{StateFile: file}, log: slog.New(slog.DiscardHandler), routes: map[string]*Route{}, asked: map[peer.ID]*Asked{}}
	s.routes["a.example"] = &Route{Domain: "a.example", Since: time.Unix(1, 0)}
	s.mu.Lock()
	earlier := s.stateLocked()
	s.routes["a.example"].Stopped = true
	later := s.stateLocked()
	s.mu.Unlock()
	s.save(later)
	s.save(earlier)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Routes) != 1 || !st.Routes[0].Stopped {
		t.Errorf("the file holds %s, not the later state", b)
	}
}
