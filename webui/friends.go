package webui

import (
	"context"
	"net/http"

	"erg"
)

// FriendsBackend is what the node provides for friends (other nodes); a
// Backend that also implements it gets the /api/friends routes and the
// Friends page.
type FriendsBackend interface {
	// NodeName is what this node calls itself to its friends.
	NodeName() string
	Friends(ctx context.Context, who erg.User) ([]erg.Friend, error)
	// NewFriendInvite makes a one-time invite code. Owner only.
	NewFriendInvite(ctx context.Context, who erg.User) (erg.FriendInvite, error)
	// AddFriend redeems another node's invite code with that node. Owner
	// only.
	AddFriend(ctx context.Context, who erg.User, code string) (erg.Friend, error)
	// RemoveFriend forgets a friend, revoking what was shared with it.
	// Owner only.
	RemoveFriend(ctx context.Context, who erg.User, name string) error
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
