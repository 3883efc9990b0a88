package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"capnproto.org/go/capnp/v3"

	"erg"
	"erg/fed"
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
		fut, release := b.Claim(ctx, func(p fed.Bridge_claim_Params) error {
			p.SetKinds(true)
			return p.SetClaim(c)
		})
		defer release()
		res, err := fut.Struct()
		if err != nil {
			return "", err
		}
		if res.HasFailure() {
			f, _ := res.Failure()
			kind, _ := f.Kind()
			reason, _ := f.Reason()
			return "", &erg.Error{Kind: erg.ParseKind(kind), Msg: reason}
		}
		g, _ := res.Grant()
		return g, nil
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
	open := func(b fed.Bridge, g string) (fed.Grain, error) {
		fut, _ := b.Open(ctx, func(p fed.Bridge_open_Params) error {
			p.SetKinds(true)
			return p.SetGrant(g)
		})
		res, err := fut.Struct()
		if err != nil {
			return fed.Grain{}, err
		}
		if res.HasFailure() {
			f, _ := res.Failure()
			reason, _ := f.Reason()
			return fed.Grain{}, fmt.Errorf("%s", reason)
		}
		return res.Grain().AddRef(), nil
	}
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
