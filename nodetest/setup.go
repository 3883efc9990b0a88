package nodetest

import (
	"strings"
	"time"
)

// SetupURL is the node's one-time setup link (choose the owner's
// password, or "Restore this node"), or "" when its owner has one. A
// process prints it on stdout once it runs; this waits a little for it.
func (n *Node) SetupURL() string {
	n.t.Helper()
	n.mu.Lock()
	nd := n.n
	n.mu.Unlock()
	if nd != nil {
		return nd.SetupURL()
	}
	var u string
	deadline := time.Now().Add(5 * time.Second)
	for u == "" && time.Now().Before(deadline) {
		n.mu.Lock()
		u = n.setupURL
		n.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return u
}

// stdoutWatcher logs what an erg run process prints and keeps its setup
// link.
type stdoutWatcher struct{ n *Node }

func (w stdoutWatcher) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.n.t.Log(w.n.Name + " (stdout): " + line)
		if i := strings.Index(line, "/setup?token="); i >= 0 {
			w.n.mu.Lock()
			w.n.setupURL = strings.TrimSpace(line)
			w.n.mu.Unlock()
		}
	}
	return len(p), nil
}
