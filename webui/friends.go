package webui

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// Friend is another node this node shares grains with.
type Friend struct {
	Name   string    `json:"name"` // what this node calls it: "user@Name"
	Peer   string    `json:"peer"` // its libp2p peer id
	Addrs  []string  `json:"addrs,omitempty"`
	Online bool      `json:"online"`
	Added  time.Time `json:"added"`
}

// FriendInvite is a one-time code another node's owner pastes to become
// this node's friend.
type FriendInvite struct {
	Code    string    `json:"code"`
	Expires time.Time `json:"expires"`
}

// FriendsBackend is what the node provides for friends (other nodes); a
// Backend that also implements it gets the /api/friends routes and the
// Friends page.
type FriendsBackend interface {
	// NodeName is what this node calls itself to its friends.
	NodeName() string
	Friends(ctx context.Context, who User) ([]Friend, error)
	// NewFriendInvite makes a one-time invite code. Owner only.
	NewFriendInvite(ctx context.Context, who User) (FriendInvite, error)
	// AddFriend redeems another node's invite code with that node. Owner
	// only.
	AddFriend(ctx context.Context, who User, code string) (Friend, error)
	// RemoveFriend forgets a friend, revoking what was shared with it.
	// Owner only.
	RemoveFriend(ctx context.Context, who User, name string) error
}

func (a *api) registerFriends(mux *http.ServeMux, b FriendsBackend) {
	guard := a.guard
	mux.HandleFunc("GET /api/friends", guard(false, func(w http.ResponseWriter, r *http.Request) {
		act, _ := actorOf(r)
		fs, err := b.Friends(r.Context(), act.user)
		reply(w, fs, err)
	}))
	mux.HandleFunc("POST /api/friends/invite", guard(true, func(w http.ResponseWriter, r *http.Request) {
		act, _ := actorOf(r)
		inv, err := b.NewFriendInvite(r.Context(), act.user)
		reply(w, inv, err)
	}))
	mux.HandleFunc("POST /api/friends", guard(true, func(w http.ResponseWriter, r *http.Request) {
		act, _ := actorOf(r)
		var in struct {
			Code string `json:"code"`
		}
		if err := decodeBody(w, r, &in); err != nil {
			writeError(w, err)
			return
		}
		f, err := b.AddFriend(r.Context(), act.user, in.Code)
		reply(w, f, err)
	}))
	mux.HandleFunc("DELETE /api/friends/{name}", guard(true, func(w http.ResponseWriter, r *http.Request) {
		act, _ := actorOf(r)
		err := b.RemoveFriend(r.Context(), act.user, r.PathValue("name"))
		reply(w, map[string]string{"removed": r.PathValue("name")}, err)
	}))
}

// Friends lists the node's friends.
func (c *Client) Friends(ctx context.Context) ([]Friend, error) {
	var out []Friend
	err := c.do(ctx, http.MethodGet, "/api/friends", nil, &out)
	return out, err
}

// NewFriendInvite makes a one-time friend invite code.
func (c *Client) NewFriendInvite(ctx context.Context) (FriendInvite, error) {
	var out FriendInvite
	err := c.do(ctx, http.MethodPost, "/api/friends/invite", nil, &out)
	return out, err
}

// AddFriend redeems another node's invite code.
func (c *Client) AddFriend(ctx context.Context, code string) (Friend, error) {
	var out Friend
	err := c.do(ctx, http.MethodPost, "/api/friends", map[string]string{"code": code}, &out)
	return out, err
}

// RemoveFriend forgets a friend.
func (c *Client) RemoveFriend(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/api/friends/"+url.PathEscape(name), nil, nil)
}
