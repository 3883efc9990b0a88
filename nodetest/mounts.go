package nodetest

import (
	"os"

	"erg/sandbox"
)

// Wipe removes the node's data dir, as a lost disk would, after a Kill or
// Stop. A node killed leaves its grains' /var images mounted (the node
// unmounts them when it stops gracefully, or at its next start); they are
// unmounted first.
func (n *Node) Wipe() {
	n.t.Helper()
	sandbox.UnmountImagesUnder(n.DataDir)
	if err := os.RemoveAll(n.DataDir); err != nil {
		n.t.Fatal(err)
	}
}
