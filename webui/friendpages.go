package webui

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"erg"
)

// friendsData is what the Friends page shows.
type friendsData struct {
	Name    string
	Reach   string // how other nodes reach this one, in words
	Friends []erg.Friend
	New     *erg.FriendInvite
}

// friendPages adds the Friends page's routes, if the backend has friends.
func (h *Handler) friendPages() []pageRoute {
	fb := h.fr
	render := func(w http.ResponseWriter, r *http.Request, a actor, code int, inv *erg.FriendInvite, notice, errMsg string) {
		fs, err := fb.Friends(r.Context(), a.user)
		if err != nil {
			h.failPage(w, r, err)
			return
		}
		h.render(w, r, code, "friends", pageData{Title: "Friends", Nav: "friends", Notice: notice, Error: errMsg,
			Data: friendsData{Name: fb.Name(), Reach: fb.Reachability().Describe(), Friends: fs, New: inv}})
	}
	userErr := func(err error) string {
		msg := err.Error()
		for _, e := range []error{erg.ErrInvalid, erg.ErrForbidden, erg.ErrNotFound} {
			msg = strings.TrimPrefix(msg, e.Error()+": ")
		}
		return msg
	}
	return []pageRoute{
		{"GET /friends", func(w http.ResponseWriter, r *http.Request, a actor) {
			render(w, r, a, http.StatusOK, nil, "", "")
		}, false},
		{"POST /friends/invite", func(w http.ResponseWriter, r *http.Request, a actor) {
			inv, err := fb.NewInvite(r.Context(), a.user)
			if err != nil {
				h.failPage(w, r, err)
				return
			}
			render(w, r, a, http.StatusCreated, &inv, "", "")
		}, false},
		{"POST /friends/add", func(w http.ResponseWriter, r *http.Request, a actor) {
			f, err := fb.Add(r.Context(), a.user, r.PostFormValue("code"))
			if err != nil {
				if errors.Is(err, erg.ErrUnauthorized) {
					h.failPage(w, r, err)
					return
				}
				render(w, r, a, http.StatusBadRequest, nil, "", "The invite did not work: "+userErr(err))
				return
			}
			render(w, r, a, http.StatusOK, nil, "You are now friends with "+f.Name+".", "")
		}, false},
		{"POST /friends/{name}/remove", func(w http.ResponseWriter, r *http.Request, a actor) {
			if err := fb.Remove(r.Context(), a.user, r.PathValue("name")); err != nil {
				h.failPage(w, r, err)
				return
			}
			http.Redirect(w, r, "/friends?removed="+url.QueryEscape(r.PathValue("name")), http.StatusSeeOther)
		}, false},
	}
}
