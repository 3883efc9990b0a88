package node

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/fed"
	"erg/grains"
)

// friendsTodo starts nodes anode and bnode, friends, with a to-do list on
// a holding one item, shared with b's owner as role; it returns the
// nodes, the list's id on a, and on b an echo grain (its id and origin)
// to ask through the powerbox and the list as b knows it.
func friendsTodo(t *testing.T, role string) (a, b *testNode, list, req, reqOrigin string, remote erg.Grain) {
	t.Helper()
	a = startNode(t, func(c *Config) { c.Name = "anode" })
	b = startNode(t, func(c *Config) { c.Name = "bnode" })
	a.setUp(t)
	b.setUp(t)
	befriend(t, a, b)
	ctx := context.Background()
	g, err := a.grains.NewGrain(ctx, a.owner(), "todo", "A's chores")
	if err != nil {
		t.Fatal(err)
	}
	ed := apiCall{t: t, n: a, auth: bearer(a.grainToken(g.ID, "editor", "").Token)}
	if code, body, _ := ed.do("POST", "/items", `{"text":"feed the cat"}`); code != http.StatusCreated {
		t.Fatalf("add item: %d %s", code, body)
	}
	if _, err := a.shares.New(ctx, a.owner(), g.ID, erg.ShareRequest{Role: role, Friend: "bnode"}); err != nil {
		t.Fatal(err)
	}
	remote = sharedWith(t, b, b.owner(), "A's chores")
	req, reqOrigin = b.newGrain("echo")
	return a, b, g.ID, req, reqOrigin, remote
}

// grantOn makes b's owner pick target for the grain req as role, and
// req's server claim it through its bridge; it returns the grant.
func grantOn(t *testing.T, b *testNode, req, reqOrigin, target, role string) string {
	t.Helper()
	claim, err := b.pbox.Pick(context.Background(), b.owner(), req, erg.PowerboxPick{Target: target, Role: role})
	if err != nil {
		t.Fatalf("pick %s as %s: %v", target, role, err)
	}
	code, grant := b.claimThrough(reqOrigin, claim)
	if code != http.StatusOK {
		t.Fatalf("claim: %d %s", code, grant)
	}
	return grant
}

// A friend's grain is offered for the API its app offers, which the
// friend's node said, and with the roles its share hands on; a lower
// role granted on it holds on the owner's node, and a higher one is
// refused on both.
func TestPowerboxFriendsGrainsOffersAndRoles(t *testing.T) {
	t.Parallel()
	a, b, list, req, reqOrigin, remote := friendsTodo(t, "editor")
	ctx := context.Background()

	var offers, apiPath string
	b.db.QueryRow(`SELECT offers, api_path FROM remote_grains WHERE id = ?`, remote.ID).Scan(&offers, &apiPath)
	if offers != "erg.todo/v1" || apiPath != "/api/" {
		t.Errorf("b holds the friend's grain as offering %q at %q", offers, apiPath)
	}
	opts, err := b.pbox.Options(ctx, b.owner(), req, erg.PowerboxQuery{API: "erg.todo/v1"})
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(opts, func(o erg.PowerboxOption) bool { return o.GrainID == remote.ID })
	if i < 0 {
		t.Fatalf("a request for erg.todo/v1 on b is not offered the friend's list: %+v", opts)
	}
	var roles []string
	for _, r := range opts[i].Roles {
		roles = append(roles, r.Name)
	}
	if strings.Join(roles, ",") != "viewer,editor" {
		t.Errorf("roles offered on the friend's editor share: %v", roles)
	}
	if opts, _ := b.pbox.Options(ctx, b.owner(), req, erg.PowerboxQuery{API: "erg.files/v1"}); slices.ContainsFunc(opts, func(o erg.PowerboxOption) bool { return o.GrainID == remote.ID }) {
		t.Errorf("the friend's list is offered for an API its app does not offer")
	}

	// A grant's paths are below the app's apiPath (/api/ for the to-do
	// app), for a friend's grain as for one here.
	viewer := grantOn(t, b, req, reqOrigin, remote.ID, "viewer")
	if code, body := b.bridgeCall(reqOrigin, "GET", "/items", viewer, ""); code != 200 || !strings.Contains(body, "feed the cat") {
		t.Fatalf("read the friend's list through a viewer grant: %d %s", code, body)
	}
	if code, body := b.bridgeCall(reqOrigin, "POST", "/items", viewer, `{"text":"defaced"}`); code != http.StatusForbidden {
		t.Errorf("a write through a viewer grant on an editor share: %d %s", code, body)
	}
	editor := grantOn(t, b, req, reqOrigin, remote.ID, "editor")
	if code, body := b.bridgeCall(reqOrigin, "POST", "/items", editor, `{"text":"water the plants"}`); code != http.StatusCreated {
		t.Errorf("a write through an editor grant: %d %s", code, body)
	}
	// The viewer grant still reads, and still cannot write, with the
	// editor's capability open beside it.
	if code, _ := b.bridgeCall(reqOrigin, "POST", "/items", viewer, `{"text":"defaced"}`); code != http.StatusForbidden {
		t.Errorf("a viewer grant's write after an editor grant's: %d", code)
	}
	_, items, _ := (&apiCall{t: t, n: a, auth: bearer(a.grainToken(list, "viewer", "").Token)}).do("GET", "/items", "")
	if strings.Contains(items, "defaced") || !strings.Contains(items, "water the plants") {
		t.Errorf("the list on a: %s", items)
	}

	// A viewer share hands on no more than viewer: b's powerbox refuses
	// editor, and a's node refuses it to a friend's node that asks anyway.
	ctx2 := context.Background()
	g2, err := a.grains.NewGrain(ctx2, a.owner(), "todo", "A's secrets")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.shares.New(ctx2, a.owner(), g2.ID, erg.ShareRequest{Role: "viewer", Friend: "bnode"}); err != nil {
		t.Fatal(err)
	}
	low := sharedWith(t, b, b.owner(), "A's secrets")
	if _, err := b.pbox.Pick(ctx, b.owner(), req, erg.PowerboxPick{Target: low.ID, Role: "editor"}); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("b's owner grants editor on a viewer share: %v", err)
	}
	if _, _, err := fed.RestoreAs(ctx, gatewayTo(t, b, a), heldToken(t, b, "A's secrets"), "alice", "editor"); erg.KindOf(err) != erg.Forbidden {
		t.Errorf("b's node restores a viewer share as editor: %v", err)
	}
	if _, _, err := fed.RestoreAs(ctx, gatewayTo(t, b, a), heldToken(t, b, "A's secrets"), "alice", "owner"); erg.KindOf(err) != erg.Forbidden {
		t.Errorf("b's node restores a viewer share with a role the app lacks: %v", err)
	}
}

// stopsWithin calls the bridge with grant until it is refused, and
// returns how long after start that was; it fails the test past d.
func stopsWithin(t *testing.T, b *testNode, reqOrigin, grant string, start time.Time, d time.Duration) time.Duration {
	t.Helper()
	for {
		code, body := b.bridgeCall(reqOrigin, "GET", "/items", grant, "")
		took := time.Since(start)
		if code == http.StatusForbidden {
			return took
		}
		if code != http.StatusOK {
			t.Fatalf("the bridge answered %d %s", code, body)
		}
		if took > d {
			t.Fatalf("the grant still works %v after", took)
		}
	}
}

// A grant to a friend's grain stops within a second of the share ending
// on the owner's node, and of the friendship ending.
func TestPowerboxFriendsGrantStops(t *testing.T) {
	t.Parallel()
	a, b, list, req, reqOrigin, remote := friendsTodo(t, "viewer")
	ctx := context.Background()
	grant := grantOn(t, b, req, reqOrigin, remote.ID, "viewer")
	if code, body := b.bridgeCall(reqOrigin, "GET", "/items", grant, ""); code != 200 {
		t.Fatalf("the grant before: %d %s", code, body)
	}
	shs, err := a.shares.List(ctx, a.owner(), list)
	if err != nil || len(shs) != 1 {
		t.Fatalf("a's shares of the list: %+v %v", shs, err)
	}
	start := time.Now()
	if err := a.shares.Revoke(ctx, a.owner(), shs[0].ID); err != nil {
		t.Fatal(err)
	}
	took := stopsWithin(t, b, reqOrigin, grant, start, time.Second)
	t.Logf("the grant stopped %v after the share was revoked", took)

	// Shared again and granted again; then a's owner ends the friendship.
	if _, err := a.shares.New(ctx, a.owner(), list, erg.ShareRequest{Role: "viewer", Friend: "bnode"}); err != nil {
		t.Fatal(err)
	}
	var again erg.Grain
	for _, g := range b.remoteGrains(ctx, b.owner()) {
		if g.Title == "A's chores" && !g.Revoked {
			again = g
		}
	}
	if again.ID == "" {
		t.Fatal("the share made again is not on b")
	}
	grant = grantOn(t, b, req, reqOrigin, again.ID, "viewer")
	if code, body := b.bridgeCall(reqOrigin, "GET", "/items", grant, ""); code != 200 {
		t.Fatalf("the second grant before: %d %s", code, body)
	}
	start = time.Now()
	if err := a.friends.Remove(ctx, a.owner(), "bnode"); err != nil {
		t.Fatal(err)
	}
	took = stopsWithin(t, b, reqOrigin, grant, start, time.Second)
	t.Logf("the grant stopped %v after the friendship ended", took)
}

// A download under way through a grant to a friend's grain is cut within
// a second of the share being revoked on the owner's node.
func TestPowerboxFriendsGrantCutsOpenRequests(t *testing.T) {
	t.Parallel()
	a, b, share := friendsFileDrop(t, "A's films", "film.bin", strings.Repeat("x", 64<<20))
	ctx := context.Background()
	remote := sharedWith(t, b, b.owner(), "A's films")
	req, reqOrigin := b.newGrain("echo")
	grant := grantOn(t, b, req, reqOrigin, remote.ID, "viewer")
	if os.Geteuid() != 0 {
		t.Skip("dialling into a sandbox's network namespace needs root")
	}
	sb := b.grains.SandboxOf(req)
	inGrain := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return sb.Dial(ctx, grains.BridgePort) },
	}}
	r, _ := http.NewRequest("GET", "http://127.0.0.1/files/film.bin", nil)
	r.Header.Set("Authorization", "Bearer "+grant)
	resp, err := inGrain.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the download's first MiB: %s %v", resp.Status, err)
	}
	// The download waits on this reader; then the share ends.
	start := time.Now()
	if err := a.shares.Revoke(ctx, a.owner(), share.ID); err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("the download ran to its end (%d bytes more) after the share was revoked", n)
	}
	if took > time.Second {
		t.Errorf("the download was cut %v after the share was revoked", took)
	}
	t.Logf("the open download was cut %v after the share was revoked, %d MiB of 64 read", took, (n+int64(len(buf)))>>20)
}

// friendsFileDrop starts two befriended nodes, anode and bnode, and shares
// a file drop of a's titled title, holding one file, with b's node as a
// viewer.
func friendsFileDrop(t *testing.T, title, file, content string) (a, b *testNode, share erg.Share) {
	t.Helper()
	a = startNode(t, func(c *Config) { c.Name = "anode" })
	b = startNode(t, func(c *Config) { c.Name = "bnode" })
	a.setUp(t)
	b.setUp(t)
	befriend(t, a, b)
	ctx := context.Background()
	drop, err := a.grains.NewGrain(ctx, a.owner(), "filedrop", title)
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, a, drop.ID, file, content)
	share, err = a.shares.New(ctx, a.owner(), drop.ID, erg.ShareRequest{Role: "viewer", Friend: "bnode"})
	if err != nil {
		t.Fatal(err)
	}
	return a, b, share
}
