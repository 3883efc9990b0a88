package fed

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"capnproto.org/go/capnp/v3"

	"erg"
)

// memShares is a share table for testing the gateway on its own; the
// node's real table is tested with real nodes.
type memShares struct {
	holder string
	token  []byte
	server *GrainServer
	asked  []string
	// oldNode answers as a node from before restore took a role: with
	// the share's, whatever was asked.
	oldNode bool
}

func (m *memShares) Restore(_ context.Context, peer, user string, token []byte, role string) (*GrainServer, ShareInfo, error) {
	m.asked = append(m.asked, user)
	if peer != m.holder || !bytes.Equal(token, m.token) || m.server.Revoked() {
		return nil, ShareInfo{}, ErrUnknownToken
	}
	info := ShareInfo{Title: "Plans", AppName: "Notes", Role: "editor", Permissions: []string{"read", "write"},
		Offers: []string{"notes/v1"}, APIPath: "/notes/",
		Roles: []erg.Role{{Name: "viewer", Title: "Can view", Permissions: []string{"read"}}, {Name: "editor", Permissions: []string{"read", "write"}}}}
	switch {
	case role == "viewer" && !m.oldNode:
		info.Role, info.Permissions = role, []string{"read"}
	case role != "" && role != "editor" && !m.oldNode:
		return nil, ShareInfo{}, erg.E(erg.Forbidden, "no role %q to hand on", role)
	}
	return m.server, info, nil
}

func (m *memShares) Offer(context.Context, string, Offer) error { return errors.New("no offers here") }

func (m *memShares) Withdraw(context.Context, string, []byte) error { return nil }

func (m *memShares) Unfriend(context.Context, string) error { return nil }

// dialGateway connects to a gateway served as if to peer.
func dialGateway(t *testing.T, peer string, shares Shares, lim *RateLimiter) Gateway {
	t.Helper()
	a, b := net.Pipe()
	server := NewConn(a, capnp.Client(NewGateway(peer, shares, lim)))
	client := NewConn(b, capnp.Client{})
	t.Cleanup(func() { client.Close(); server.Close() })
	gw := Gateway(client.Bootstrap(context.Background()))
	t.Cleanup(gw.Release)
	return gw
}

func TestGatewayRestore(t *testing.T) {
	ctx := context.Background()
	shares := &memShares{holder: "peerB", token: []byte("0123456789abcdef0123456789abcdef"),
		server: NewGrainServer(http.DefaultTransport, nil)}
	lim := NewRateLimiter(1, 100)

	g, info, err := Restore(ctx, dialGateway(t, "peerB", shares, lim), shares.token, "bob")
	if err != nil {
		t.Fatal(err)
	}
	g.Release()
	if info.Title != "Plans" || info.Role != "editor" || strings.Join(info.Permissions, ",") != "read,write" ||
		strings.Join(info.Offers, ",") != "notes/v1" || info.APIPath != "/notes/" || len(info.Roles) != 2 || info.Roles[0].Title != "Can view" ||
		strings.Join(info.Roles[1].Permissions, ",") != "read,write" {
		t.Errorf("info %+v", info)
	}
	// A lower role, asked for, is what comes back; one the share cannot
	// hand on is refused with its kind.
	g, info, err = RestoreAs(ctx, dialGateway(t, "peerB", shares, lim), shares.token, "bob", "viewer")
	if err != nil || info.Role != "viewer" || strings.Join(info.Permissions, ",") != "read" {
		t.Errorf("restore as viewer: %+v %v", info, err)
	}
	g.Release()
	if _, _, err := RestoreAs(ctx, dialGateway(t, "peerB", shares, lim), shares.token, "bob", "admin"); erg.KindOf(err) != erg.Forbidden {
		t.Errorf("restore as a role above the share's: %v", err)
	}
	// A node that ignores the role and answers with the share's is
	// refused by the asker: never more than asked for.
	shares.oldNode = true
	if _, _, err := RestoreAs(ctx, dialGateway(t, "peerB", shares, lim), shares.token, "bob", "viewer"); erg.KindOf(err) != erg.Forbidden {
		t.Errorf("an old node's answer with the share's role: %v", err)
	}
	shares.oldNode = false

	// The right token from the wrong node, a guessed token, an oversized
	// one: all look the same to the asker.
	for name, c := range map[string]struct {
		peer  string
		token []byte
	}{
		"token replayed by another node": {"peerC", shares.token},
		"guessed token":                  {"peerB", []byte("0123456789abcdef0123456789abcdeX")},
		"empty token":                    {"peerB", nil},
		"oversized token":                {"peerB", bytes.Repeat([]byte("a"), MaxTokenSize+1)},
	} {
		if _, _, err := Restore(ctx, dialGateway(t, c.peer, shares, lim), c.token, "bob"); !errors.Is(err, ErrUnknownToken) {
			t.Errorf("%s: %v", name, err)
		}
	}

	// Revoked: refused like any unknown token.
	shares.server.Revoke()
	if _, _, err := Restore(ctx, dialGateway(t, "peerB", shares, lim), shares.token, "bob"); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("revoked: %v", err)
	}
}

func TestGatewayRateLimit(t *testing.T) {
	ctx := context.Background()
	shares := &memShares{holder: "peerB", token: []byte("t"), server: NewGrainServer(http.DefaultTransport, nil)}
	lim := NewRateLimiter(0.5, 5)
	gw := dialGateway(t, "peerX", shares, lim)
	refused := 0
	for range 20 {
		if _, _, err := Restore(ctx, gw, []byte("guess"), ""); errors.Is(err, ErrTooManyRestores) {
			refused++
		}
	}
	if refused != 15 {
		t.Errorf("%d of 20 rapid restores refused, want 15 (burst 5)", refused)
	}
	if len(shares.asked) != 5 {
		t.Errorf("the share table was asked %d times, want 5", len(shares.asked))
	}
	// Another peer has its own bucket, even over a new connection.
	if _, _, err := Restore(ctx, dialGateway(t, "peerB", shares, lim), shares.token, ""); err != nil {
		t.Errorf("another peer: %v", err)
	}
	// A peer's bucket survives reconnecting.
	if _, _, err := Restore(ctx, dialGateway(t, "peerX", shares, lim), []byte("guess"), ""); !errors.Is(err, ErrTooManyRestores) {
		t.Errorf("reconnected flooder: %v", err)
	}
	lim.buckets["peerX"].last = time.Now().Add(-4 * time.Second)
	if _, _, err := Restore(ctx, dialGateway(t, "peerX", shares, lim), []byte("guess"), ""); !errors.Is(err, ErrUnknownToken) {
		t.Errorf("after waiting: %v", err)
	}
}
