package p2p

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
)

type fakeFriends map[peer.ID]bool

func (f fakeFriends) IsFriend(p peer.ID) bool      { return f[p] }
func (f fakeFriends) FriendPeers() []peer.AddrInfo { return nil }

func newID(t *testing.T) peer.ID {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	sk, _ := crypto.UnmarshalEd25519PrivateKey(k)
	id, err := peer.IDFromPrivateKey(sk)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestRelayServesFriendsOnly(t *testing.T) {
	friend, friend2, stranger := newID(t), newID(t), newID(t)
	x := &Host{}
	acl := friendsOnly{x}
	// Before the friends are known, no one.
	if acl.AllowReserve(friend, nil) || acl.AllowConnect(friend, nil, friend2) {
		t.Fatal("the relay admitted a peer before it knew its friends")
	}
	x.SetFriends(fakeFriends{friend: true, friend2: true})
	tests := []struct {
		name      string
		reserve   peer.ID
		src, dest peer.ID
		want      bool
	}{
		{"friend reserves, friend connects to friend", friend, friend2, friend, true},
		{"stranger reserves, stranger connects to a friend", stranger, stranger, friend, false},
		{"friend connects to a stranger's slot", stranger, friend, stranger, false},
	}
	for _, tc := range tests {
		if got := acl.AllowReserve(tc.reserve, nil); got != tc.want {
			t.Errorf("%s: reserve = %v, want %v", tc.name, got, tc.want)
		}
		if got := acl.AllowConnect(tc.src, nil, tc.dest); got != tc.want {
			t.Errorf("%s: connect = %v, want %v", tc.name, got, tc.want)
		}
	}
	if r := RelayResources(); r.Limit != nil {
		t.Errorf("relayed friends' sessions are cut at %v / %d bytes", r.Limit.Duration, r.Limit.Data)
	}
}
