package main

import (
	"crypto/ed25519"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"erg"
	"erg/apppkg"
	"erg/node"
)

// TestStoreInstallShowsEveryPhase runs `erg app install APPID` against a
// stand-in node that streams a store install's steps, and checks the
// command shows the fetch and then the verifying and unpacking.
func TestStoreInstallShowsEveryPhase(t *testing.T) {
	data := t.TempDir()
	pub, _, _ := ed25519.GenerateKey(nil)
	appID := apppkg.AppID(pub)
	l, err := net.Listen("unix", node.SocketPath(data))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/api/store/apps/"+appID+"/install" {
			http.NotFound(w, r)
			return
		}
		enc := json.NewEncoder(w)
		fetch := &erg.InstallStep{Phase: erg.PhaseFetching, Done: 3 << 20, Blocks: 12, Peers: 2, Elapsed: erg.Duration(1e9)}
		enc.Encode(erg.InstallEvent{Step: fetch, Progress: &erg.FetchProgress{Bytes: fetch.Done, Blocks: 12, Peers: 2, Elapsed: fetch.Elapsed}})
		enc.Encode(erg.InstallEvent{Step: &erg.InstallStep{Phase: erg.PhaseVerifying, Done: 3 << 20, Total: 3 << 20}})
		enc.Encode(erg.InstallEvent{Step: &erg.InstallStep{Phase: erg.PhaseUnpacking, Done: 1 << 20, Total: 3 << 20}})
		enc.Encode(erg.InstallEvent{Step: &erg.InstallStep{Phase: erg.PhaseUnpacking, Done: 3 << 20, Total: 3 << 20}})
		enc.Encode(erg.InstallEvent{App: &erg.App{ID: appID, Name: "Echo", Version: 1, DisplayVersion: "0.1"}})
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	out, errOut, code := run(t, "--data", data, "app", "install", appID)
	if code != 0 || !strings.Contains(out, "installed Echo 0.1 (version 1) from the store") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	want := []string{"fetching: 3.1 MB, 12 blocks from 2 peers", "\nverifying\n", "\nunpacking\n"}
	last := -1
	for _, w := range want {
		i := strings.Index(errOut, w)
		if i < 0 || i < last {
			t.Errorf("stderr does not show %q after the steps before it:\n%q", w, errOut)
		}
		last = i
	}
}
