package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/coder/websocket"

	"erg"
)

// post sends a POST to url with the given headers and returns its status.
func post(t *testing.T, c *http.Client, url string, h map[string]string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader("x"))
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkCrossGrain runs the attacks of another grain (at other) on the echo
// grain at origin, as c, and the same-origin requests that must still work.
func checkCrossGrain(t *testing.T, c *http.Client, origin, other string) {
	t.Helper()
	ctx := context.Background()
	read := func() string {
		t.Helper()
		resp, err := c.Get(origin + "/read")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if code := post(t, c, origin+"/write?v=mine", map[string]string{"Origin": origin, "Sec-Fetch-Site": "same-origin"}); code != 200 {
		t.Fatalf("same-origin POST: %d", code)
	}
	for _, h := range []map[string]string{
		{"Origin": other},
		{"Origin": other, "Sec-Fetch-Site": "same-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "null"},
	} {
		if code := post(t, c, origin+"/write?v=evil", h); code != http.StatusForbidden {
			t.Errorf("POST with %v: %d, want 403", h, code)
		}
	}
	for _, h := range []http.Header{{"Origin": {other}}, {"Origin": {origin}, "Sec-Fetch-Site": {"same-site"}}} {
		ws, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(origin, "http")+"/ws", &websocket.DialOptions{HTTPClient: c, HTTPHeader: h})
		if err == nil {
			ws.CloseNow()
			t.Errorf("websocket with %v opened", h)
		} else if resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Errorf("websocket with %v: %v", h, err)
		}
	}
	if got := read(); got != "mine" {
		t.Errorf("the grain holds %q after the cross-grain writes", got)
	}
	// A client that sends neither header, and the grain's own websocket.
	if code := post(t, c, origin+"/write?v=curl", nil); code != 200 {
		t.Errorf("POST without Origin: %d", code)
	}
	if got := read(); got != "curl" {
		t.Errorf("after a POST without Origin: %q", got)
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(origin, "http")+"/ws",
		&websocket.DialOptions{HTTPClient: c, HTTPHeader: http.Header{"Origin": {origin}, "Sec-Fetch-Site": {"same-origin"}}})
	if err != nil {
		t.Fatalf("same-origin websocket: %v", err)
	}
	defer ws.CloseNow()
	ws.Write(ctx, websocket.MessageText, []byte("ping"))
	if _, msg, err := ws.Read(ctx); err != nil || string(msg) != "ping" {
		t.Errorf("same-origin websocket: %q %v", msg, err)
	}
}

func TestProxyRefusesCrossGrainWrites(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, x := n.newGrain("echo")
	_, y := n.newGrain("echo")
	checkCrossGrain(t, n.http, y, x)
}

// The friend's node serves a friend's grain on an origin of its own and
// checks a request's origin there, before the relay, as for a local one.
func TestFriendGrainRefusesCrossGrainWrites(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	befriend(t, a, b)
	e, err := a.grains.NewGrain(ctx, a.owner(), "echo", "Echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.shares.New(ctx, a.owner(), e.ID, erg.ShareRequest{Role: "editor", Friend: "bnode"}); err != nil {
		t.Fatal(err)
	}
	_, local := b.newGrain("echo")
	friend := openOn(t, b, b.owner(), sharedWith(t, b, b.owner(), "Echo").ID)
	checkCrossGrain(t, b.http, friend, local)
}
