package webui

import (
	"net/http"

	"erg/friends"
)

func (a *api) registerFriends(mux *http.ServeMux, b *friends.Service) {
	guard := a.guard
	mux.HandleFunc("GET /api/friends", guard(false, func(w http.ResponseWriter, r *http.Request) {
		act, _ := actorOf(r)
		fs, err := b.Friends(r.Context(), act.user)
		reply(w, fs, err)
	}))
	mux.HandleFunc("POST /api/friends/invite", guard(true, func(w http.ResponseWriter, r *http.Request) {
		act, _ := actorOf(r)
		inv, err := b.NewInvite(r.Context(), act.user)
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
		f, err := b.Add(r.Context(), act.user, in.Code)
		reply(w, f, err)
	}))
	mux.HandleFunc("DELETE /api/friends/{name}", guard(true, func(w http.ResponseWriter, r *http.Request) {
		act, _ := actorOf(r)
		err := b.Remove(r.Context(), act.user, r.PathValue("name"))
		reply(w, map[string]string{"removed": r.PathValue("name")}, err)
	}))
}
