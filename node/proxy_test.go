package node

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestProxyReplacesIdentityHeaders(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	_, origin := n.newGrain("echo")
	req, _ := http.NewRequest("GET", origin+"/headers", nil)
	for _, h := range []string{"X-Erg-Username", "X-Erg-Permissions", "X-Sandstorm-Username", "X-Erg-Anything", "X-Sandstorm-Session-Id"} {
		req.Header.Set(h, "forged")
	}
	resp, err := n.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got http.Header
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	for name, vals := range got {
		for _, v := range vals {
			if v == "forged" {
				t.Errorf("client-sent %s reached the grain", name)
			}
		}
		if strings.EqualFold(name, "Cookie") && strings.Contains(strings.Join(vals, ";"), "erg_grain") {
			t.Errorf("the node's session cookie reached the grain: %v", vals)
		}
	}
	for _, prefix := range []string{"X-Erg-", "X-Sandstorm-"} {
		if got.Get(prefix+"Username") != "alice" {
			t.Errorf("%sUsername = %q", prefix, got.Get(prefix+"Username"))
		}
		if got.Get(prefix+"Permissions") != "read,write" {
			t.Errorf("%sPermissions = %q", prefix, got.Get(prefix+"Permissions"))
		}
		if len(got.Get(prefix+"User-Id")) != 32 || len(got.Get(prefix+"Session-Id")) != 32 {
			t.Errorf("%sUser-Id / Session-Id missing: %v", prefix, got)
		}
	}
	if got.Get("X-Erg-User-Id") == n.NodeID() || strings.Contains(got.Get("X-Erg-User-Id"), "alice") {
		t.Error("user id leaks the account")
	}
}

func TestProxyRefusesUnknownGrainsAndStrangers(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	id, origin := n.newGrain("echo")
	n.grains.Stop(context.Background(), id, "test")
	startsBefore := n.grains.Starts()

	stranger := n.newClient()
	resp, err := stranger.Get(origin + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no session: %s, want 401", resp.Status)
	}
	req, _ := http.NewRequest("GET", origin+"/", nil)
	req.AddCookie(&http.Cookie{Name: "erg_grain", Value: "guessed"})
	resp, err = stranger.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("forged session: %s, want 403", resp.Status)
	}
	if n.grains.Running(id) {
		t.Error("an unauthenticated request started the grain")
	}

	missing := strings.Replace(origin, "g-"+id, "g-doesnotexist", 1)
	if code, _ := n.get(missing + "/"); code != http.StatusNotFound {
		t.Errorf("unknown grain: %d, want 404", code)
	}
	if got := n.grains.Starts() - startsBefore; got != 0 {
		t.Errorf("%d grain starts for refused requests, want 0", got)
	}
}

func TestLoginTokenWorksOnce(t *testing.T) {
	t.Parallel()
	n := startNode(t, nil)
	g, err := n.grains.NewGrain(context.Background(), n.owner(), "echo", "t")
	if err != nil {
		t.Fatal(err)
	}
	first := n.newClient()
	resp, err := first.Get(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first use: %s", resp.Status)
	}
	second := n.newClient()
	resp, err = second.Get(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("second use: %s, want 403", resp.Status)
	}
	// An expired token is refused too.
	g2, _ := n.OpenGrain(context.Background(), n.owner(), g.ID)
	n.db.Exec(`UPDATE login_tokens SET expires_at = 0`)
	resp, err = n.newClient().Get(g2.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("expired token: %s, want 403", resp.Status)
	}
}
