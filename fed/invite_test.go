package fed

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
)

func TestInviteRoundTrip(t *testing.T) {
	secret := make([]byte, 32)
	rand.Read(secret)
	inv := Invite{Peer: "12D3KooWabc", Addrs: []string{"/ip4/127.0.0.1/tcp/4001"}, Name: "alice-home", Secret: secret}
	got, err := ParseInvite("  " + inv.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Peer != inv.Peer || got.Name != inv.Name || !bytes.Equal(got.Secret, secret) || len(got.Addrs) != 1 {
		t.Fatalf("round trip: %+v", got)
	}
}

func TestInviteRefusesDamage(t *testing.T) {
	secret := make([]byte, 32)
	good := Invite{Peer: "p", Addrs: []string{"/ip4/127.0.0.1/tcp/1"}, Name: "n", Secret: secret}
	cases := map[string]string{
		"not an invite":   "hello",
		"cut short":       good.String()[:30],
		"bad base64":      invitePrefix + "!!!",
		"short secret":    Invite{Peer: "p", Name: "n", Secret: secret[:8]}.String(),
		"no peer":         Invite{Name: "n", Secret: secret}.String(),
		"name with @":     Invite{Peer: "p", Name: "bob@evil", Secret: secret}.String(),
		"name with space": Invite{Peer: "p", Name: "a b", Secret: secret}.String(),
		"empty name":      Invite{Peer: "p", Secret: secret}.String(),
		"bad address":     Invite{Peer: "p", Name: "n", Secret: secret, Addrs: []string{"127.0.0.1:1"}}.String(),
		"huge":            invitePrefix + strings.Repeat("A", 9000),
	}
	for name, code := range cases {
		if _, err := ParseInvite(code); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestFrames(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, FriendRequest{Secret: []byte("s"), Name: "bob"}); err != nil {
		t.Fatal(err)
	}
	var req FriendRequest
	if err := ReadFrame(bufio.NewReader(&buf), &req); err != nil || req.Name != "bob" {
		t.Fatalf("%+v %v", req, err)
	}
	// Oversized and unknown-field frames are refused.
	big := []byte{0, 1, 0, 0}
	if err := ReadFrame(bufio.NewReader(bytes.NewReader(big)), &req); err == nil {
		t.Error("a 64 KiB frame header was accepted")
	}
	buf.Reset()
	WriteFrame(&buf, map[string]string{"secret": "", "evil": "1"})
	if err := ReadFrame(bufio.NewReader(&buf), &req); err == nil {
		t.Error("unknown field accepted")
	}
}
