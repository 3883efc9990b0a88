package node

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"erg"
	"erg/internal/testkit"
	"erg/powerbox"
)

// bridgeCall makes the echo grain at origin call its bridge, as an app's
// server does, and returns the bridge's status and body.
func (n *testNode) bridgeCall(origin, method, path, auth, body string) (int, string) {
	n.t.Helper()
	q := url.Values{"method": {method}, "path": {path}, "auth": {auth}, "body": {body}}
	resp, err := n.http.Get(origin + "/bridge?" + q.Encode())
	if err != nil {
		n.t.Fatalf("bridge call: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		n.t.Fatalf("the echo grain could not reach its bridge: %s %s", resp.Status, b)
	}
	code := 0
	json.Unmarshal([]byte(resp.Header.Get("X-Bridge-Status")), &code)
	return code, string(b)
}

func (n *testNode) claimThrough(origin, claim string) (int, string) {
	n.t.Helper()
	body, _ := json.Marshal(map[string]string{"claim": claim, "label": "from the test"})
	code, out := n.bridgeCall(origin, "POST", "/_erg/claim", "", string(body))
	if code != 200 {
		return code, out
	}
	var g struct{ Token string }
	json.Unmarshal([]byte(out), &g)
	return code, g.Token
}

// A grain asks for a to-do list, the user picks one as viewer, the
// grain's server claims it through its bridge and reads the list through
// it; everything the security tests try is refused.
func TestPowerboxGrantThroughTheBridge(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	owner := n.owner()
	reqID, reqOrigin := n.newGrain("echo")
	otherID, otherOrigin := n.newGrain("echo")
	target, _ := n.newGrain("todo")
	never, _ := n.newGrain("todo")
	ed := apiCall{t: t, n: n, auth: bearer(n.grainToken(target, "editor", "").Token)}
	if code, body, _ := ed.do("POST", "/items", `{"text":"water the plants"}`); code != http.StatusCreated {
		t.Fatalf("add item: %d %s", code, body)
	}

	opts, err := n.pbox.Options(ctx, owner, reqID, erg.PowerboxQuery{App: "todo"})
	if err != nil || len(opts) != 2 {
		t.Fatalf("options for a to-do list: %+v %v", opts, err)
	}
	if opts, _ := n.pbox.Options(ctx, owner, reqID, erg.PowerboxQuery{App: "echo"}); len(opts) != 1 || opts[0].GrainID != otherID {
		t.Errorf("options for an echo grain leave out the requester only: %+v", opts)
	}
	claim, err := n.pbox.Pick(ctx, owner, reqID, erg.PowerboxPick{Target: target, Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	code, grant := n.claimThrough(reqOrigin, claim)
	if code != 200 || !strings.HasPrefix(grant, powerbox.GrantPrefix) {
		t.Fatalf("claim: %d %s", code, grant)
	}
	if code, body := n.claimThrough(reqOrigin, claim); code != http.StatusForbidden {
		t.Errorf("a claim used twice: %d %s", code, body)
	}
	code, body := n.bridgeCall(reqOrigin, "GET", "/items", grant, "")
	if code != 200 || !strings.Contains(body, "water the plants") {
		t.Fatalf("read through the grant: %d %s", code, body)
	}
	if code, body := n.bridgeCall(reqOrigin, "POST", "/items", grant, `{"text":"defaced"}`); code != http.StatusForbidden {
		t.Errorf("a write beyond the grant's role: %d %s", code, body)
	}
	// Another grain presenting the grant: the bridge knows it is not the
	// grain the grant is for, whatever it sends.
	if code, body := n.bridgeCall(otherOrigin, "GET", "/items", grant, ""); code != http.StatusForbidden {
		t.Errorf("a grant used by another grain: %d %s", code, body)
	}
	// A claim sent by another grain is refused, and spent.
	stolen, _ := n.pbox.Pick(ctx, owner, reqID, erg.PowerboxPick{Target: target, Role: "viewer"})
	if code, body := n.claimThrough(otherOrigin, stolen); code != http.StatusForbidden {
		t.Errorf("a claim by another grain: %d %s", code, body)
	}
	if code, _ := n.claimThrough(reqOrigin, stolen); code != http.StatusForbidden {
		t.Errorf("a claim after another grain tried it: %d", code)
	}
	expired, _ := n.pbox.Pick(ctx, owner, reqID, erg.PowerboxPick{Target: target, Role: "viewer"})
	n.db.Exec(`UPDATE powerbox_claims SET expires_at = 0`)
	if code, _ := n.claimThrough(reqOrigin, expired); code != http.StatusForbidden {
		t.Errorf("an expired claim: %d", code)
	}
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/items", powerbox.GrantPrefix+"forged", ""); code != http.StatusForbidden {
		t.Errorf("a grant never made: %d", code)
	}
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/items", "", ""); code != http.StatusUnauthorized {
		t.Errorf("no grant: %d", code)
	}
	if _, err := n.pbox.Pick(ctx, owner, reqID, erg.PowerboxPick{Target: target, Role: "admin"}); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a role the app lacks: %v", err)
	}
	_ = never

	// Both grains list the connection.
	for _, id := range []string{reqID, target} {
		gs, err := n.pbox.List(ctx, owner, id)
		if err != nil || len(gs) != 1 || gs[0].Requester != reqID || gs[0].Target != target || gs[0].Token != "" {
			t.Errorf("grants of %s: %+v %v", id, gs, err)
		}
	}
	// Revoked from the target's side: the next use is refused.
	gs, _ := n.pbox.List(ctx, owner, target)
	if err := n.pbox.Revoke(ctx, owner, gs[0].ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/items", grant, ""); code != http.StatusForbidden {
		t.Errorf("a revoked grant: %d", code)
	}

	// A grant to a grain that is deleted stops.
	claim, _ = n.pbox.Pick(ctx, owner, reqID, erg.PowerboxPick{Target: never, Role: "editor"})
	_, grant = n.claimThrough(reqOrigin, claim)
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/items", grant, ""); code != 200 {
		t.Fatalf("second grant: %d", code)
	}
	if err := n.grains.RemoveGrain(ctx, owner, never); err != nil {
		t.Fatal(err)
	}
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/items", grant, ""); code != http.StatusForbidden {
		t.Errorf("a grant to a deleted grain: %d", code)
	}
	// And it is gone from the requesting grain's Connections.
	if gs, err := n.pbox.List(ctx, owner, reqID); err != nil || slices.ContainsFunc(gs, func(g erg.Grant) bool { return g.Target == never }) {
		t.Errorf("the deleted grain's grant is still listed: %+v %v", gs, err)
	}
}

// A frame that floods the powerbox with requests is held back, and the
// user's other grains are not.
func TestPowerboxRequestsAreRateLimited(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	owner := n.owner()
	a, _ := n.newGrain("echo")
	b, _ := n.newGrain("echo")
	target, _ := n.newGrain("todo")
	limited := 0
	for range 30 {
		_, err := n.pbox.Pick(ctx, owner, a, erg.PowerboxPick{Target: target, Role: "viewer"})
		if errors.Is(err, erg.ErrTooMany) {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited < 15 {
		t.Errorf("%d of 30 requests in a burst limited", limited)
	}
	if _, err := n.pbox.Pick(ctx, owner, b, erg.PowerboxPick{Target: target, Role: "viewer"}); err != nil {
		t.Errorf("another grain's request: %v", err)
	}
	var claims int
	n.db.QueryRow(`SELECT count(*) FROM powerbox_claims`).Scan(&claims)
	if claims != 30-limited+1 {
		t.Errorf("%d claims recorded, want %d", claims, 30-limited+1)
	}
}

// A user's grant is tied to what they may do: never a role above their
// own, and it stops, open requests included, within a second of them
// losing the grain.
func TestPowerboxGrantEndsWithTheUsersAccess(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	ctx := context.Background()
	n.setUp(t)
	n.join(t, "bob")
	bob, err := n.accounts.UserByName(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	target, _ := n.newGrain("todo")
	share, err := n.shares.New(ctx, n.owner(), target, erg.ShareRequest{Role: "viewer", ForUser: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	g, err := n.grains.NewGrain(ctx, bob, "echo", "bob's")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.pbox.Pick(ctx, bob, g.ID, erg.PowerboxPick{Target: target, Role: "editor"}); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("bob grants more than he holds: %v", err)
	}
	if _, err := n.pbox.Pick(ctx, n.owner(), g.ID, erg.PowerboxPick{Target: target, Role: "viewer"}); !errors.Is(err, erg.ErrNotFound) {
		t.Errorf("the owner asks the powerbox for bob's grain: %v", err)
	}
	claim, err := n.pbox.Pick(ctx, bob, g.ID, erg.PowerboxPick{Target: target, Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	grant, err := n.pbox.Claim(ctx, g.ID, claim, "")
	if err != nil {
		t.Fatal(err)
	}
	if grant.User != "bob" {
		t.Errorf("granted by %q", grant.User)
	}
	a, err := n.pbox.Open(ctx, g.ID, grant.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	if a.Viewer.Username != "bob" || strings.Join(a.Viewer.Permissions, ",") != "read" || a.Via == "" {
		t.Errorf("the target is told %+v via %q", a.Viewer, a.Via)
	}
	if err := n.shares.Revoke(ctx, n.owner(), share.ID); err != nil {
		t.Fatal(err)
	}
	// The check runs twice a second; two seconds leave room for a busy
	// machine.
	testkit.AwaitFor(t, 2*time.Second, "the open request cut", func() bool { return a.Viewer.Session.Err() != nil })
	if _, err := n.pbox.Open(ctx, g.ID, grant.Token); !errors.Is(err, erg.ErrForbidden) {
		t.Errorf("a grant after bob lost the grain: %v", err)
	}
}

// `erg grain grants` lists a grain's connections and revokes one: the
// grant's next use through the bridge is refused.
func TestGrantsThroughTheCLI(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	reqID, reqOrigin := n.newGrain("echo")
	target, _ := n.newGrain("todo")
	if code, _ := n.claimThrough(reqOrigin, mustPick(t, n, reqID, target)); code != 200 {
		t.Fatalf("claim: %d", code)
	}
	_, grant := n.claimThrough(reqOrigin, mustPick(t, n, reqID, target))
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(ergBinary(t), append([]string{"--data", n.cfg.DataDir}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("erg %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	var gs []struct{ ID, Target, Role string }
	if err := json.Unmarshal([]byte(run("grain", "grants", "ls", reqID, "--json")), &gs); err != nil || len(gs) != 2 || gs[0].Target != target || gs[0].Role != "viewer" {
		t.Fatalf("grants ls --json: %+v %v", gs, err)
	}
	if out := run("grain", "grants", "ls", target); !strings.Contains(out, gs[0].ID) || !strings.Contains(out, "viewer") {
		t.Errorf("the target's grants ls:\n%s", out)
	}
	for _, g := range gs {
		run("grain", "grants", "rm", g.ID)
	}
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/items", grant, ""); code != http.StatusForbidden {
		t.Errorf("a grant revoked from the CLI: %d", code)
	}
	if out := run("grain", "grants", "ls", reqID); !strings.Contains(out, "no connections") {
		t.Errorf("grants ls after rm:\n%s", out)
	}
}

func mustPick(t *testing.T, n *testNode, requester, target string) string {
	t.Helper()
	claim, err := n.pbox.Pick(context.Background(), n.owner(), requester, erg.PowerboxPick{Target: target, Role: "viewer"})
	if err != nil {
		t.Fatal(err)
	}
	return claim
}

// The bridge keeps a grant's Grain open between requests; when the
// target's sandbox goes (its app crashed), requests reach it started
// again, and a revocation still cuts the next.
// echoGrant is two echo grains on a new node, the first holding a grant
// to the second as editor: the requester's id and origin, and the grant.
func echoGrant(t *testing.T) (n *testNode, reqID, reqOrigin, grant string) {
	t.Helper()
	n = startNode(t, nil)
	reqID, reqOrigin = n.newGrain("echo")
	target, _ := n.newGrain("echo")
	claim, err := n.pbox.Pick(context.Background(), n.owner(), reqID, erg.PowerboxPick{Target: target, Role: "editor"})
	if err != nil {
		t.Fatal(err)
	}
	_, grant = n.claimThrough(reqOrigin, claim)
	return n, reqID, reqOrigin, grant
}

func TestPowerboxBridgeAfterTheTargetCrashed(t *testing.T) {
	t.Parallel()
	n, reqID, reqOrigin, grant := echoGrant(t)
	pid := func() string {
		t.Helper()
		code, body := n.bridgeCall(reqOrigin, "GET", "/pid", grant, "")
		if code != 200 {
			t.Fatalf("GET /pid through the bridge: %d %s", code, body)
		}
		return body
	}
	first := pid()
	if again := pid(); again != first {
		t.Fatalf("the target restarted between two requests: %s, %s", first, again)
	}
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/crash", grant, ""); code == 200 {
		t.Fatal("the crash answered 200")
	}
	// Until the node has seen the app exit, a request may still find the
	// old sandbox (as through the proxy); then one reaches a new start.
	// Requests come more often than a kept Grain idles out: one kept for
	// good on the old sandbox would never get there.
	testkit.Await(t, "the target started again through the bridge", func() bool {
		code, body := n.bridgeCall(reqOrigin, "GET", "/pid", grant, "")
		return code == 200 && body != first
	})
	gs, _ := n.pbox.List(context.Background(), n.owner(), reqID)
	if err := n.pbox.Revoke(context.Background(), n.owner(), gs[0].ID); err != nil {
		t.Fatal(err)
	}
	if code, _ := n.bridgeCall(reqOrigin, "GET", "/pid", grant, ""); code != http.StatusForbidden {
		t.Errorf("the kept Grain after its grant was revoked: %d", code)
	}
}

// A target that answers 502 itself has answered: the requester gets the
// answer, and its grant's Grain stays open on the same sandbox (a target
// that failed under it ends it: TestPowerboxBridgeAfterTheTargetCrashed).
func TestPowerboxBridgeKeepsATargetAnswering502(t *testing.T) {
	t.Parallel()
	n, _, reqOrigin, grant := echoGrant(t)
	code, first := n.bridgeCall(reqOrigin, "GET", "/pid", grant, "")
	if code != 200 {
		t.Fatalf("GET /pid through the bridge: %d %s", code, first)
	}
	opens := n.pbox.Opens()
	// Well within keepOpen of each other: one Grain serves them all.
	for range 3 {
		if code, body := n.bridgeCall(reqOrigin, "GET", "/status?code=502", grant, ""); code != http.StatusBadGateway || body != "echo answers 502\n" {
			t.Fatalf("the target's own 502: %d %q", code, body)
		}
		if code, body := n.bridgeCall(reqOrigin, "GET", "/pid", grant, ""); code != 200 || body != first {
			t.Fatalf("after the target's 502: %d %q, not the first start's %q", code, body, first)
		}
	}
	if got := n.pbox.Opens(); got != opens {
		t.Errorf("the grant was opened %d times more after the target's 502s", got-opens)
	}
}
