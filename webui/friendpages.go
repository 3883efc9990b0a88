package webui

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"erg"
)

// friendsData is what the Friends page shows.
type friendsData struct {
	Name    string
	Reach   string // how other nodes reach this one, in words
	Friends []erg.Friend
	New     *erg.FriendInvite
	Offers  map[string]erg.BackupOffer // space for backups offered, by friend name
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
		d := friendsData{Name: fb.Name(), Reach: fb.Reachability().Describe(), Friends: fs, New: inv}
		if a.user.Owner {
			d.Offers = h.offersByFriend(r)
		}
		h.render(w, r, code, "friends", pageData{Title: "Friends", Nav: "friends", Notice: notice, Error: errMsg, Data: d})
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
		{"POST /friends/{name}/offer", func(w http.ResponseWriter, r *http.Request, a actor) {
			name := r.PathValue("name")
			gb, err := strconv.ParseFloat(strings.TrimSpace(r.PostFormValue("gb")), 64)
			if err != nil || gb < 0 {
				render(w, r, a, http.StatusBadRequest, nil, "", "Say how many GB to keep for "+name+" (0 to stop).")
				return
			}
			if gb == 0 {
				err = h.bk.WithdrawSpace(r.Context(), a.user, name)
			} else {
				err = h.bk.OfferSpace(r.Context(), a.user, name, int64(gb*(1<<30)))
			}
			if err != nil {
				render(w, r, a, statusOf(err), nil, "", "The offer is unchanged: "+userErr(err))
				return
			}
			msg := "You keep up to " + strconv.FormatFloat(gb, 'f', -1, 64) + " GB of backups for " + name + "."
			if gb == 0 {
				msg = "You no longer keep backups for " + name + "; what you kept is deleted."
			}
			render(w, r, a, http.StatusOK, nil, msg, "")
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

// offersByFriend is the space offered for friends' backups, by name.
func (h *Handler) offersByFriend(r *http.Request) map[string]erg.BackupOffer {
	os, err := h.bk.Offers(r.Context())
	if err != nil {
		return nil
	}
	m := map[string]erg.BackupOffer{}
	for _, o := range os {
		m[o.Friend] = o
	}
	return m
}
