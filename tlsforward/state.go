package tlsforward

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// What the service keeps across restarts, in Config.StateFile: the
// friends this node asked to forward for it (asked again at start, and
// until they answer), and the names it forwards for friends with the
// owner's stops, so a restart neither ends remote access nor undoes a
// stop.

type savedState struct {
	Asked  []string     `json:"asked"`
	Routes []savedRoute `json:"routes"`
	n      uint64       // which copy (stateLocked) it is
}

type savedRoute struct {
	Domain  string    `json:"domain"`
	Peer    string    `json:"peer"`
	Since   time.Time `json:"since"`
	Stopped bool      `json:"stopped,omitempty"`
}

// reaskEvery is how often, at most, a friend asked before a restart is
// asked again until it answers.
const reaskEvery = 30 * time.Second

// load reads the state file, keeping only friends'.
func (s *Service) load() error {
	if s.cfg.StateFile == "" {
		return nil
	}
	b, err := os.ReadFile(s.cfg.StateFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st savedState
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	for _, id := range st.Asked {
		if p, err := peer.Decode(id); err == nil && s.cfg.IsFriend(p) {
			s.asked[p] = &Asked{Peer: p, Friend: s.cfg.FriendName(p), Err: "asking again since the node started", pending: true}
		}
	}
	for _, r := range st.Routes {
		if p, err := peer.Decode(r.Peer); err == nil && s.cfg.IsFriend(p) && validDomain(r.Domain) {
			s.routes[r.Domain] = &Route{Domain: r.Domain, Peer: p, Friend: s.cfg.FriendName(p), Since: r.Since, Stopped: r.Stopped}
		}
	}
	return nil
}

// stateLocked is a copy of what is saved, numbered after the last one
// taken; s.mu held.
func (s *Service) stateLocked() savedState {
	s.taken++
	st := savedState{n: s.taken}
	for p := range s.asked {
		st.Asked = append(st.Asked, p.String())
	}
	for _, r := range s.routes {
		st.Routes = append(st.Routes, savedRoute{Domain: r.Domain, Peer: r.Peer.String(), Since: r.Since, Stopped: r.Stopped})
	}
	return st
}

// change makes a change to what is saved under s.mu and, if f made it
// (returned nil), saves a copy of the result outside the lock.
func (s *Service) change(f func() error) error {
	s.mu.Lock()
	err := f()
	var st savedState
	if err == nil {
		st = s.stateLocked()
	}
	s.mu.Unlock()
	if err == nil {
		s.save(st)
	}
	return err
}

// save writes a copy stateLocked took to the state file (0600, through a
// rename), outside s.mu: the disk holds up neither a friend's ask nor a
// forwarded connection. Two saves may race to the file after their
// copies were taken; one never writes over a later copy than its own.
func (s *Service) save(st savedState) {
	if s.cfg.StateFile == "" {
		return
	}
	s.saveMu.Lock()
	defer s.saveMu.Unlock()
	if st.n <= s.saved {
		return
	}
	b, _ := json.Marshal(st)
	tmp := s.cfg.StateFile + ".tmp"
	err := os.MkdirAll(filepath.Dir(s.cfg.StateFile), 0o700)
	if err == nil {
		err = os.WriteFile(tmp, b, 0o600)
	}
	if err == nil {
		err = os.Rename(tmp, s.cfg.StateFile)
	}
	if err != nil {
		s.log.Warn("remote access: could not save the forwarding state; a restart will forget changes", "err", err)
		return
	}
	s.saved = st.n
}

// reask asks again, until each answers, the friends asked before the
// node started; an answer (yes, or a refusal) ends a friend's retries.
func (s *Service) reask(ctx context.Context) {
	// Soon at first (the friends' connections come up as the node
	// starts), then every reaskEvery.
	wait := 2 * time.Second
	for {
		var todo []peer.ID
		s.mu.Lock()
		for p, a := range s.asked {
			if a.pending {
				todo = append(todo, p)
			}
		}
		s.mu.Unlock()
		if len(todo) == 0 {
			return
		}
		for _, p := range todo {
			_, err := s.Ask(ctx, p)
			var refused *refusal
			switch {
			case err == nil:
				s.log.Info("remote access: the friend forwards for this node again", "friend", s.cfg.FriendName(p))
			case errors.As(err, &refused):
				s.log.Warn("remote access: the friend refused to forward again", "friend", s.cfg.FriendName(p), "err", err)
			case ctx.Err() != nil:
				return
			default:
				s.log.Info("remote access: the friend could not be asked again yet", "friend", s.cfg.FriendName(p), "err", err)
				s.mu.Lock()
				if a, ok := s.asked[p]; ok {
					a.pending = true
				}
				s.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, reaskEvery)
	}
}

// refusal is a friend's answer refusing to forward, as opposed to not
// getting an answer.
type refusal struct{ why string }

func (r *refusal) Error() string { return r.why }
