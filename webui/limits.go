package webui

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// bodyGuard cuts request bodies that trickle. The server's read timeout
// bounds a whole request, which a long upload outgrows; a handler reading
// a long body wraps it with guard, which moves the connection's read
// deadline on only as bytes arrive: each byte buys 1/rate seconds, up to
// stall ahead of now. A body that keeps up rate on average is read to
// its end however long it is; one that stalls for longer than stall, or
// dribbles slower than rate, hits the deadline and its reads fail.
type bodyGuard struct {
	stall time.Duration // 0: no guard
	rate  int64         // bytes per second
}

// guard wraps r.Body; call it before anything reads the body.
func (g bodyGuard) guard(w http.ResponseWriter, r *http.Request) {
	if g.stall <= 0 || g.rate <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	g.guardConn(r, http.NewResponseController(w).SetReadDeadline)
}

// guardConn is guard for a body read straight from a connection (the
// grain loop's), whose read deadline setDeadline sets.
func (g bodyGuard) guardConn(r *http.Request, setDeadline func(time.Time) error) {
	if g.stall <= 0 || g.rate <= 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	deadline := time.Now().Add(g.stall)
	if setDeadline(deadline) != nil {
		return // not a connection we can set deadlines on (a test's recorder)
	}
	r.Body = &guardedBody{ReadCloser: r.Body, setDeadline: setDeadline, g: g, deadline: deadline}
}

type guardedBody struct {
	io.ReadCloser
	setDeadline func(time.Time) error
	g           bodyGuard
	deadline    time.Time
}

func (b *guardedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	// At the body's end the server clears the deadline itself (it goes
	// on watching the connection for the client hanging up), and a
	// deadline set now would cut the handler's context when it passed.
	if n > 0 && err == nil {
		now := time.Now()
		b.deadline = b.deadline.Add(time.Duration(int64(n) * int64(time.Second) / b.g.rate))
		if limit := now.Add(b.g.stall); b.deadline.After(limit) {
			b.deadline = limit
		}
		b.setDeadline(b.deadline)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errBodyTooSlow
	}
	return n, err
}

// errBodyTooSlow is what a trickling body's reads fail with.
var errBodyTooSlow = errors.New("the upload was too slow and was cut off")

// wsLimiter counts the websockets open through the grain proxy by who
// opened them, so that no one user can hold the node's connections and
// the grains' with websockets left open.
type wsLimiter struct {
	max  int // 0: no cap
	mu   sync.Mutex
	open map[string]int
}

func newWSLimiter(max int) *wsLimiter { return &wsLimiter{max: max, open: map[string]int{}} }

// acquire counts one more websocket for key, or reports that key is at
// the cap. A true result must be followed by release.
func (l *wsLimiter) acquire(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.open[key] >= l.max {
		return false
	}
	l.open[key]++
	return true
}

func (l *wsLimiter) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open[key]--; l.open[key] <= 0 {
		delete(l.open, key)
	}
}

// isUpgrade reports whether r asks to switch protocols (a websocket).
func isUpgrade(r *http.Request) bool {
	return r.Header.Get("Upgrade") != "" && headerHasToken(r.Header, "Connection", "upgrade")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
