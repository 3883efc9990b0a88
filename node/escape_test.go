package node

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"erg/sandbox/sandboxtest"
)

// TestEscapeBattery runs the sandbox escape battery against a real grain,
// every attempt going through the node's proxy, with the node as root.
func TestEscapeBattery(t *testing.T) {
	if os.Geteuid() != 0 && !sandboxtest.InRerun() {
		t.Skip("root mode needs root; TestEscapeBatteryUnprivileged covers the other")
	}
	nodeBattery(t)
}

// TestEscapeBatteryUnprivileged runs the same battery with the node running
// as an ordinary user (created here), sandboxing through user namespaces.
func TestEscapeBatteryUnprivileged(t *testing.T) {
	if sandboxtest.InRerun() {
		if os.Geteuid() == 0 {
			t.Fatal("the re-run is still root")
		}
		nodeBattery(t)
		return
	}
	uid, gid := sandboxtest.UnprivilegedUser(t)
	sandboxtest.RerunAs(t, uid, gid, appsEnv+"="+testApps(t))
}

func nodeBattery(t *testing.T) {
	n := startNode(t, nil)
	if want := map[bool]string{true: "root", false: "unprivileged"}[os.Geteuid() == 0]; n.runner.Mode() != want {
		t.Fatalf("sandbox mode %q, want %q", n.runner.Mode(), want)
	}
	// Installing strips setuid bits (a package may not carry them), so put
	// one back on the installed tree to check it gains the app nothing.
	var tree string
	if err := n.db.QueryRow(`SELECT tree FROM apps WHERE id = 'probe'`).Scan(&tree); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(tree, "bin", "suid"), 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}

	other, otherOrigin := n.newGrain("probe")
	if code, _ := n.get(otherOrigin + "/"); code != 200 {
		t.Fatalf("other grain: %d", code)
	}
	otherFile := filepath.Join(n.grains.Dir(other), "var", "secret")
	if err := os.WriteFile(otherFile, []byte("the other grain's data"), 0o600); err != nil {
		t.Fatal(err)
	}

	id, origin := n.newGrain("probe")
	tgt := sandboxtest.Target{
		Get: func(ctx context.Context, path string) (int, []byte, error) {
			req, err := http.NewRequestWithContext(ctx, "GET", origin+path, nil)
			if err != nil {
				return 0, nil, err
			}
			resp, err := n.http.Do(req)
			if err != nil {
				return 0, nil, err
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			return resp.StatusCode, body, err
		},
		HostFiles: []string{
			filepath.Join(n.cfg.DataDir, dbFile),
			filepath.Join(n.cfg.DataDir, identityFile),
		},
		OtherVarFile:    otherFile,
		OtherVarContent: "the other grain's data",
		NoFile:          4096,
	}
	if n.runner.Cgroups() != "none" {
		tgt.Pids = 64
		tgt.MemoryBytes = 64 << 20
	} else {
		t.Log("no cgroups: the fork bomb and memory hog checks are skipped")
	}
	sandboxtest.Battery(t, tgt)

	if tgt.MemoryBytes != 0 {
		log, _ := n.grains.Log(context.Background(), n.owner(), id)
		if !strings.Contains(string(log), "out of memory") {
			t.Errorf("the grain log does not say the app ran out of memory:\n%s", log)
		}
	}
	// The node is unharmed: another grain still answers.
	if code, _ := n.get(otherOrigin + "/"); code != 200 {
		t.Errorf("other grain after the battery: %d", code)
	}
}
