package main

import (
	"context"
	"sync"
)

// A hub tells every open websocket when the note changes, and at shutdown
// asks them all to close and waits until they have.
type hub struct {
	mu      sync.Mutex
	sockets map[chan struct{}]bool
	closed  bool
	stop    chan struct{} // closed when the hub closes
	wg      sync.WaitGroup
}

func newHub() *hub {
	return &hub{sockets: make(map[chan struct{}]bool), stop: make(chan struct{})}
}

// join registers a socket. Its channel receives a value after the note
// changes; changes that happen before the socket catches up collapse into
// one, because a socket always sends the latest note. ok is false once the
// hub is closing; otherwise the caller must call leave.
func (h *hub) join() (changed chan struct{}, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, false
	}
	changed = make(chan struct{}, 1)
	h.sockets[changed] = true
	h.wg.Add(1)
	return changed, true
}

func (h *hub) leave(changed chan struct{}) {
	h.mu.Lock()
	delete(h.sockets, changed)
	h.mu.Unlock()
	h.wg.Done()
}

// notify tells every socket that the note changed.
func (h *hub) notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for changed := range h.sockets {
		select {
		case changed <- struct{}{}:
		default: // a signal is already pending
		}
	}
}

// stopping is closed when the sockets should close.
func (h *hub) stopping() <-chan struct{} { return h.stop }

// close asks every socket to close and waits until all have left, or ctx
// is done.
func (h *hub) close(ctx context.Context) error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		close(h.stop)
	}
	h.mu.Unlock()

	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
