package webui

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"erg"
)

// usersData is what the users page shows.
type usersData struct {
	Users   []erg.User
	Invites []erg.Invite
	New     *erg.Invite
	Grains  []erg.NodeGrain // every grain on the node
}

// FormatSize is n bytes for a person: 512 B, 3.4 KiB, 12 MiB.
func FormatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n), -1
	for v >= unit && i < 4 {
		v /= unit
		i++
	}
	format := "%.1f %ciB"
	if v >= 10 {
		format = "%.0f %ciB"
	}
	return fmt.Sprintf(format, v, "KMGTP"[i])
}

func (h *Handler) usersPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderUsers(w, r, a, http.StatusOK, nil, "")
}

func (h *Handler) renderUsers(w http.ResponseWriter, r *http.Request, a actor, code int, inv *erg.Invite, errMsg string) {
	users, err := h.acc.Users(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	invites, err := h.acc.Invites(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	grains, err := h.gr.All(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, code, "users", pageData{Title: "Users", Nav: "users", Error: errMsg,
		Data: usersData{Users: users, Invites: invites, New: inv, Grains: grains}})
}

// nodeGrain finds any grain on the node for the owner's pages; anyone
// else is refused.
func (h *Handler) nodeGrain(r *http.Request, a actor, id string) (erg.NodeGrain, error) {
	all, err := h.gr.All(r.Context(), a.user)
	if err != nil {
		return erg.NodeGrain{}, err
	}
	for _, g := range all {
		if g.ID == id {
			return g, nil
		}
	}
	return erg.NodeGrain{}, fmt.Errorf("%w: no grain %q", erg.ErrNotFound, id)
}

// confirmDeleteNodeGrain asks the owner before deleting anyone's grain
// from the users page.
func (h *Handler) confirmDeleteNodeGrain(w http.ResponseWriter, r *http.Request, a actor) {
	g, err := h.nodeGrain(r, a, r.PathValue("id"))
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "confirm", pageData{Title: "Delete " + g.Title + "?", Nav: "users", Data: map[string]string{
		"Question": fmt.Sprintf("Delete %s’s grain “%s” and everything in it?", g.Owner, g.Title),
		"Detail": fmt.Sprintf("It is a %s grain taking %s on disk. It is stopped if running, and everything shared from it stops working. This cannot be undone.",
			g.AppName, FormatSize(g.Size)),
		"Action": "/users/grains/" + url.PathEscape(g.ID) + "/delete", "Button": "Delete grain", "Cancel": "/users",
	}})
}

func (h *Handler) deleteNodeGrain(w http.ResponseWriter, r *http.Request, a actor) {
	if err := ownerOnly(a.user); err != nil {
		h.failPage(w, r, err)
		return
	}
	if err := h.gr.RemoveGrain(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (h *Handler) inviteUser(w http.ResponseWriter, r *http.Request, a actor) {
	inv, err := h.acc.InviteUser(r.Context(), a.user, r.PostFormValue("username"))
	if errors.Is(err, erg.ErrInvalid) {
		h.renderUsers(w, r, a, http.StatusBadRequest, nil, erg.Message(err))
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.renderUsers(w, r, a, http.StatusCreated, &inv, "")
}

func (h *Handler) confirmRemoveUser(w http.ResponseWriter, r *http.Request, a actor) {
	if err := ownerOnly(a.user); err != nil {
		h.failPage(w, r, err)
		return
	}
	name := r.PathValue("name")
	h.render(w, r, http.StatusOK, "confirm", pageData{Title: "Remove " + name + "?", Nav: "users", Data: map[string]string{
		"Question": fmt.Sprintf("Remove the user %s?", name),
		"Detail":   "Their grains are deleted with them, and everything shared with them stops working.",
		"Action":   "/users/" + url.PathEscape(name) + "/remove", "Button": "Remove user", "Cancel": "/users",
	}})
}

func (h *Handler) removeUser(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.b.RemoveUser(r.Context(), a.user, r.PathValue("name")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}

func (h *Handler) cancelInvite(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.acc.CancelInvite(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/users", http.StatusSeeOther)
}
