package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"capnproto.org/go/capnp/v3"
	"github.com/coder/websocket"

	"erg"
	"erg/fed"
	"erg/grains"
	"erg/sandbox"
)

// bridgeSocket dials the grain's bridge socket as its app would, through
// the sandbox's own root (which only root on the host can see into).
func bridgeSocket(t *testing.T, n *testNode, grain string) fed.Bridge {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("reaching into a sandbox's /tmp needs root")
	}
	sb := n.grains.SandboxOf(grain)
	if sb == nil {
		t.Fatal("grain not running")
	}
	c, err := net.Dial("unix", fmt.Sprintf("/proc/%d/root%s", sb.Pid(), sandbox.BridgeSocket))
	if err != nil {
		t.Fatal(err)
	}
	conn := fed.NewConn(c, capnp.Client{})
	t.Cleanup(func() { conn.Close() })
	return fed.Bridge(conn.Bootstrap(context.Background()))
}

// An app that speaks Cap'n Proto claims its grant on the bridge socket
// and reaches the target grain through the Grain capability it opens;
// a claim for another grain and a forged grant are refused there too.
func TestPowerboxBridgeSpeaksCapnp(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	owner := n.owner()
	reqID, _ := n.newGrain("echo")
	otherID, _ := n.newGrain("echo")
	target, _ := n.newGrain("todo")
	ed := apiCall{t: t, n: n, auth: bearer(n.grainToken(target, "editor", "").Token)}
	if code, body, _ := ed.do("POST", "/items", `{"text":"by capnp"}`); code != http.StatusCreated {
		t.Fatalf("add item: %d %s", code, body)
	}
	bridge := bridgeSocket(t, n, reqID)
	other := bridgeSocket(t, n, otherID)

	claim := func(b fed.Bridge, c string) (string, error) {
		g, err := fed.ClaimGrant(ctx, b, c, "")
		return g.Token, err
	}
	c1, _ := n.pbox.Pick(ctx, owner, reqID, erg.PowerboxPick{Target: target, Role: "viewer"})
	if _, err := claim(other, c1); erg.KindOf(err) != erg.Forbidden {
		t.Errorf("a claim on another grain's socket: %v", err)
	}
	c2, _ := n.pbox.Pick(ctx, owner, reqID, erg.PowerboxPick{Target: target, Role: "viewer"})
	grant, err := claim(bridge, c2)
	if err != nil {
		t.Fatal(err)
	}
	open := func(b fed.Bridge, g string) (fed.Grain, error) { return fed.OpenGrant(ctx, b, g) }
	if _, err := open(other, grant); err == nil {
		t.Error("another grain opened the grant")
	}
	g, err := open(bridge, grant)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	hc := &http.Client{Transport: &fed.Transport{Grain: g}}
	resp, err := hc.Get("http://grain/items")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "by capnp") {
		t.Fatalf("GET /items through the Grain capability: %s %s", resp.Status, body)
	}
	resp, err = hc.Post("http://grain/items", "application/json", strings.NewReader(`{"text":"defaced"}`))
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("a write beyond the role through capnp: %v %v", resp, err)
	}
	gs, _ := n.pbox.List(ctx, owner, reqID)
	if err := n.pbox.Revoke(ctx, owner, gs[0].ID); err != nil {
		t.Fatal(err)
	}
	if resp, err := hc.Get("http://grain/items"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("the Grain capability still works after the grant was revoked")
		}
	}
}

// The bridge's HTTP face is a client of its Cap'n Proto one: a request
// with forged identity headers reaches the target with the node's, the
// same through either face, and a websocket works through the HTTP face
// as it does through the proxy.
func TestPowerboxBridgeFacesAgree(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	reqID, _ := n.newGrain("echo")
	target, _ := n.newGrain("echo")
	claim, _ := n.pbox.Pick(ctx, n.owner(), reqID, erg.PowerboxPick{Target: target, Role: "editor"})
	bridge := bridgeSocket(t, n, reqID)
	grant, err := fed.ClaimGrant(ctx, bridge, claim, "faces")
	if err != nil || grant.Target != target || grant.Role != "editor" || grant.ID == "" {
		t.Fatalf("claim on the socket: %+v %v", grant, err)
	}
	sb := n.grains.SandboxOf(reqID)
	inGrain := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx, grains.BridgePort) },
	}}
	g, err := fed.OpenGrant(ctx, bridge, grant.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Release()
	overSocket := &http.Client{Transport: &fed.Transport{Grain: g}}

	forged := http.Header{
		"X-Erg-User-Id": {"forged"}, "X-Sandstorm-Username": {"forged"}, "X_Erg_Permissions": {"forged"},
		"Cookie": {"grain=forged"}, "X-Erg-Via-Grain": {"forged"}, "X-Forwarded-For": {"forged"},
	}
	seen := func(c *http.Client, path string) http.Header {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://127.0.0.1"+path, nil)
		req.Header = forged.Clone()
		req.Header.Set("Authorization", "Bearer "+grant.Token)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h http.Header
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %v", path, resp.Status, err)
		}
		return h
	}
	overHTTP := seen(inGrain, "/headers")
	for name, h := range map[string]http.Header{"HTTP": overHTTP, "capnp": seen(overSocket, "/headers")} {
		for k, vs := range h {
			if slices.ContainsFunc(vs, func(v string) bool { return strings.Contains(v, "forged") }) {
				t.Errorf("through the %s face the target is told %s: %q", name, k, vs)
			}
		}
		if h.Get("Authorization") != "" || h.Get("Cookie") != "" {
			t.Errorf("through the %s face the target gets credentials: %v", name, h)
		}
		for _, k := range []string{"X-Sandstorm-Username", "X-Sandstorm-Permissions", "X-Sandstorm-User-Id", "X-Erg-Via-Grain"} {
			if h.Get(k) == "" || h.Get(k) != overHTTP.Get(k) {
				t.Errorf("%s through the %s face: %q, through HTTP %q", k, name, h.Get(k), overHTTP.Get(k))
			}
		}
	}
	if overHTTP.Get("X-Sandstorm-Permissions") != "read,write" {
		t.Errorf("the editor grant's permissions: %q", overHTTP.Get("X-Sandstorm-Permissions"))
	}

	req, _ := http.NewRequest("GET", "http://127.0.0.1/a/../headers", nil)
	req.Header.Set("Authorization", "Bearer "+grant.Token)
	if resp, err := inGrain.Do(req); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a dotted path on the HTTP face: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	ws, _, err := websocket.Dial(ctx, "ws://127.0.0.1/ws", &websocket.DialOptions{HTTPClient: inGrain,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + grant.Token}}})
	if err != nil {
		t.Fatalf("a websocket through the HTTP face: %v", err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte("over the bridge")); err != nil {
		t.Fatal(err)
	}
	if _, data, err := ws.Read(ctx); err != nil || string(data) != "over the bridge" {
		t.Errorf("the websocket's echo: %q %v", data, err)
	}
}

// Requests under way when a grant is revoked are refused as later ones
// are, 403 or the capability's revoked error, never a 5xx that reads as
// the grain failing: eight at once, nine revocations, so that the cut
// lands in the middle of a request's check and of its exchange. Half
// send a body; one of those the grain answered before the cut may end
// as a cut exchange (an error) instead.
func TestPowerboxRevokeRefusesRequestsUnderWay(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	reqID, _ := n.newGrain("echo")
	target, _ := n.newGrain("echo")
	bridge := bridgeSocket(t, n, reqID)
	for range 9 { // the powerbox's burst is 10 picks
		claim, err := n.pbox.Pick(ctx, n.owner(), reqID, erg.PowerboxPick{Target: target, Role: "editor"})
		if err != nil {
			t.Fatal(err)
		}
		grant, err := fed.ClaimGrant(ctx, bridge, claim, "revoked under way")
		if err != nil {
			t.Fatal(err)
		}
		g, err := fed.OpenGrant(ctx, bridge, grant.Token)
		if err != nil {
			t.Fatal(err)
		}
		hc := &http.Client{Transport: &fed.Transport{Grain: g}}
		var wg sync.WaitGroup
		for i := range 8 {
			post := i%2 == 1
			wg.Go(func() {
				for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
					var resp *http.Response
					var err error
					if post {
						resp, err = hc.Post("http://grain/write?v=x", "text/plain", strings.NewReader("a body"))
					} else {
						resp, err = hc.Get("http://grain/headers")
					}
					if errors.Is(err, fed.ErrRevoked) || post && err != nil {
						return
					}
					if err != nil {
						t.Errorf("a request as the grant is revoked: %v", err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch resp.StatusCode {
					case http.StatusOK:
						continue
					case http.StatusForbidden:
						return
					}
					t.Errorf("a request as the grant is revoked is answered %s %s", resp.Status, body)
					return
				}
				t.Error("requests still answered 10 s after the grant was revoked")
			})
		}
		time.Sleep(100 * time.Millisecond)
		gs, _ := n.pbox.List(ctx, n.owner(), reqID)
		if len(gs) != 1 || gs[0].ID != grant.ID {
			t.Fatalf("the grants: %+v", gs)
		}
		if err := n.pbox.Revoke(ctx, n.owner(), grant.ID); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		g.Release()
	}
}
