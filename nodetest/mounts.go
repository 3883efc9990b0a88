package nodetest

import (
	"os"
	"sort"
	"strings"

	"erg/sandbox"
)

// Wipe removes the node's data dir, as a lost disk would, after a Kill or
// Stop. A node killed leaves its grains' /var images mounted (the node
// unmounts them only when it stops gracefully); they are unmounted first.
func (n *Node) Wipe() {
	n.t.Helper()
	unmountUnder(n.DataDir)
	if err := os.RemoveAll(n.DataDir); err != nil {
		n.t.Fatal(err)
	}
}

// unmountUnder unmounts every mount below dir, deepest first.
func unmountUnder(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			points = append(points, f[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	for _, p := range points {
		sandbox.UnmountImage(p)
	}
}
