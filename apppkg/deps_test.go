package apppkg

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoNetworking keeps the package format apart from the store: a
// tool that packs or verifies packages must not pull in libp2p.
func TestLinksNoNetworking(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		// go-buffer-pool, a byte-slice pool boxo's chunker uses, is the one
		// module of the libp2p organisation allowed: it has no networking.
		if strings.Contains(dep, "libp2p") && dep != "github.com/libp2p/go-buffer-pool" {
			t.Errorf("apppkg depends on %s", dep)
		}
	}
}
