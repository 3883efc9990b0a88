package node

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"capnproto.org/go/capnp/v3"
	"github.com/libp2p/go-libp2p/core/peer"

	"erg"
	"erg/fed"
)

// heldToken is the token b holds for the grain titled title.
func heldToken(t *testing.T, b *testNode, title string) []byte {
	t.Helper()
	var token []byte
	if err := b.db.QueryRow(`SELECT token FROM remote_grains WHERE title = ?`, title).Scan(&token); err == nil {
		return token
	}
	t.Fatalf("%s holds no share of %q", b.friends.Name(), title)
	return nil
}

func gatewayTo(t *testing.T, from, to *testNode) fed.Gateway {
	t.Helper()
	c, err := from.gateway(context.Background(), to.p2p.host.ID())
	if err != nil {
		t.Fatal(err)
	}
	return c.gw
}

func connectTo(t *testing.T, from, to *testNode) {
	t.Helper()
	ai := peer.AddrInfo{ID: to.p2p.host.ID(), Addrs: to.p2p.host.Libp2p().Addrs()}
	if err := from.p2p.host.Libp2p().Connect(context.Background(), ai); err != nil {
		t.Fatal(err)
	}
}

func TestFederationRefusesWhatIsNotTheirs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := startNode(t, func(c *Config) { c.Name = "anode" })
	b := startNode(t, func(c *Config) { c.Name = "bnode"; c.Owner = "bob" })
	c := startNode(t, func(c *Config) { c.Name = "cnode"; c.Owner = "carol" })
	d := startNode(t, func(c *Config) { c.Name = "dnode"; c.Owner = "dan" })
	befriend(t, a, b)
	befriend(t, a, c)

	notes, _ := a.grains.NewGrain(ctx, a.owner(), "notes", "Notes")
	echo, _ := a.grains.NewGrain(ctx, a.owner(), "echo", "Echo")
	if _, err := a.shares.New(ctx, a.owner(), notes.ID, erg.ShareRequest{Role: "viewer", Friend: "bnode", FriendUser: "bob"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.shares.New(ctx, a.owner(), echo.ID, erg.ShareRequest{Role: "editor", Friend: "bnode"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.shares.New(ctx, a.owner(), notes.ID, erg.ShareRequest{Role: "viewer", Friend: "dnode"}); err == nil {
		t.Error("a shared with a node that is not its friend")
	}
	if _, err := a.shares.New(ctx, a.owner(), notes.ID, erg.ShareRequest{Role: "owner", Friend: "bnode"}); err == nil {
		t.Error("a shared with a role the app does not have")
	}
	token := heldToken(t, b, "Notes")

	t.Run("the holder restores with the share's role", func(t *testing.T) {
		g, info, err := fed.Restore(ctx, gatewayTo(t, b, a), token, "bob")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		if info.Role != "viewer" || strings.Join(info.Permissions, ",") != "read" {
			t.Errorf("info %+v", info)
		}
		// B asks for more than viewer, and claims to be someone else: the
		// grain is told the share's role and bob@bnode.
		tr := &fed.Transport{Grain: g}
		req, _ := http.NewRequest(http.MethodPut, "http://grain/api/note", strings.NewReader(`{"title":"x","text":"y","baseVersion":0}`))
		req.Header.Set("X-Erg-Permissions", "read,write")
		req.Header.Set("X-Sandstorm-Permissions", "read,write")
		req.Header.Set("X-Erg-Username", "alice")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("a viewer's PUT with forged permissions: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("identity headers from the friend are replaced", func(t *testing.T) {
		g, _, err := fed.Restore(ctx, gatewayTo(t, b, a), heldToken(t, b, "Echo"), "bob")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		tr := &fed.Transport{Grain: g}
		req, _ := http.NewRequest(http.MethodGet, "http://grain/headers", nil)
		for _, h := range []string{"X-Erg-Username", "X-Erg-User-Id", "X-Sandstorm-Username", "X-Erg-Session-Id"} {
			req.Header.Set(h, "alice")
		}
		req.Header.Set("Connection", "X-Erg-Username")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var hdr http.Header
		json.NewDecoder(resp.Body).Decode(&hdr)
		resp.Body.Close()
		if hdr.Get("X-Erg-Username") != "bob@bnode" || hdr.Get("X-Sandstorm-Username") != "bob@bnode" || hdr.Get("X-Erg-User-Id") == "alice" || hdr.Get("X-Erg-Session-Id") == "alice" {
			t.Errorf("the grain saw %v", hdr)
		}
		if len(hdr.Values("X-Erg-Username")) != 1 {
			t.Errorf("X-Erg-Username has %d values", len(hdr.Values("X-Erg-Username")))
		}
		// The user id is stable per (friend node, user, grain).
		g2, _, err := fed.Restore(ctx, gatewayTo(t, b, a), heldToken(t, b, "Echo"), "bob")
		if err != nil {
			t.Fatal(err)
		}
		defer g2.Release()
		req, _ = http.NewRequest(http.MethodGet, "http://grain/headers", nil)
		resp, err = (&fed.Transport{Grain: g2}).RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		var hdr2 http.Header
		json.NewDecoder(resp.Body).Decode(&hdr2)
		resp.Body.Close()
		if hdr2.Get("X-Erg-User-Id") != hdr.Get("X-Erg-User-Id") || hdr2.Get("X-Erg-Session-Id") == hdr.Get("X-Erg-Session-Id") {
			t.Errorf("user id %q then %q; session %q then %q", hdr.Get("X-Erg-User-Id"), hdr2.Get("X-Erg-User-Id"), hdr.Get("X-Erg-Session-Id"), hdr2.Get("X-Erg-Session-Id"))
		}
	})

	t.Run("a share for one user restores for no other", func(t *testing.T) {
		if _, _, err := fed.Restore(ctx, gatewayTo(t, b, a), token, "mallory"); !errors.Is(err, fed.ErrUnknownToken) {
			t.Errorf("restore for another user: %v", err)
		}
		if _, _, err := fed.Restore(ctx, gatewayTo(t, b, a), token, "bob@anode"); err == nil {
			t.Error("restore for a user name with @ worked")
		}
	})

	t.Run("another friend replaying the token gets nothing", func(t *testing.T) {
		if _, _, err := fed.Restore(ctx, gatewayTo(t, c, a), token, "bob"); !errors.Is(err, fed.ErrUnknownToken) {
			t.Errorf("c replaying b's token: %v", err)
		}
		guess := make([]byte, 32)
		rand.Read(guess)
		if _, _, err := fed.Restore(ctx, gatewayTo(t, c, a), guess, "carol"); !errors.Is(err, fed.ErrUnknownToken) {
			t.Errorf("a guessed token: %v", err)
		}
	})

	t.Run("the token sent to the wrong node gets nothing", func(t *testing.T) {
		befriend(t, c, b)
		if _, _, err := fed.Restore(ctx, gatewayTo(t, b, c), token, "bob"); !errors.Is(err, fed.ErrUnknownToken) {
			t.Errorf("b's token at c: %v", err)
		}
	})

	t.Run("a stranger's capnp stream is reset", func(t *testing.T) {
		connectTo(t, d, a)
		s, err := d.p2p.host.Libp2p().NewStream(ctx, a.p2p.host.ID(), fed.CapnpProtocol)
		if err != nil {
			return // refused at negotiation: as good
		}
		conn := fed.NewConn(s, capnp.Client{})
		defer conn.Close()
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, _, err = fed.Restore(rctx, fed.Gateway(conn.Bootstrap(rctx)), token, "bob")
		if err == nil || rctx.Err() != nil {
			t.Errorf("a stranger's restore: %v (deadline %v)", err, rctx.Err())
		}
		// Nor may it befriend or offer anything without an invite.
		if _, err := d.friends.Add(ctx, d.owner(), fed.Invite{Peer: a.p2p.host.ID().String(), Name: "anode", Secret: make([]byte, 32),
			Addrs: a.p2p.host.Addrs()}.String()); err == nil || !strings.Contains(err.Error(), "unknown, used or expired") {
			t.Errorf("befriending with a forged invite: %v", err)
		}
	})

	t.Run("a restore flood is limited and harms no one else", func(t *testing.T) {
		gw := gatewayTo(t, c, a)
		limited := 0
		for range 60 {
			guess := make([]byte, 32)
			rand.Read(guess)
			if _, _, err := fed.Restore(ctx, gw, guess, "carol"); errors.Is(err, fed.ErrTooManyRestores) {
				limited++
			}
		}
		if limited == 0 {
			t.Error("60 restores at once were all answered")
		}
		g, _, err := fed.Restore(ctx, gatewayTo(t, b, a), token, "bob")
		if err != nil {
			t.Fatalf("b's restore during c's flood: %v", err)
		}
		g.Release()
	})

	t.Run("malformed and oversized messages end only that connection", func(t *testing.T) {
		for name, msg := range map[string][]byte{
			"garbage":   []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x00\x00\x00\x00\x00\x00\x00"),
			"oversized": oversizedFrame(),
			"too many segments": func() []byte {
				b := make([]byte, 8)
				binary.LittleEndian.PutUint32(b, 1<<20)
				return b
			}(),
		} {
			s, err := c.p2p.host.Libp2p().NewStream(ctx, a.p2p.host.ID(), fed.CapnpProtocol)
			if err != nil {
				t.Fatal(err)
			}
			s.Write(msg)
			s.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.Copy(io.Discard, s); err != nil && strings.Contains(err.Error(), "deadline") {
				t.Errorf("%s: the connection stayed open", name)
			}
			s.Close()
		}
		g, _, err := fed.Restore(ctx, gatewayTo(t, b, a), token, "bob")
		if err != nil {
			t.Fatalf("b's restore after the bad messages: %v", err)
		}
		g.Release()
	})

	t.Run("removing a friend revokes its shares on both sides", func(t *testing.T) {
		g, _, err := fed.Restore(ctx, gatewayTo(t, b, a), token, "bob")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Release()
		if err := b.friends.Remove(ctx, b.owner(), "anode"); err != nil {
			t.Fatal(err)
		}
		if gs := b.remoteGrains(ctx, b.owner()); len(gs) != 0 {
			t.Errorf("b still lists %d grains from a", len(gs))
		}
		// b told a: a forgot b too.
		if fs, _ := a.friends.Friends(ctx, a.owner()); len(fs) != 1 || fs[0].Name != "cnode" {
			t.Errorf("a's friends after b removed it: %+v", fs)
		}
		req, _ := http.NewRequest(http.MethodGet, "http://grain/api/note", nil)
		if _, err := (&fed.Transport{Grain: g}).RoundTrip(req); err == nil {
			t.Error("a capability outlived the friendship")
		}
		if shares, _ := a.shares.List(ctx, a.owner(), notes.ID); len(shares) != 0 {
			t.Errorf("a keeps %d shares to its former friend", len(shares))
		}
	})
}

// oversizedFrame is a Cap'n Proto stream frame header announcing one
// segment of 2 MiB, over the 1 MiB limit.
func oversizedFrame() []byte {
	b := make([]byte, 8+4096)
	binary.LittleEndian.PutUint32(b[0:], 0)
	binary.LittleEndian.PutUint32(b[4:], (2<<20)/8)
	return b
}
