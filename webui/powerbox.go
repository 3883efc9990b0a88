package webui

import (
	"net/http"

	"erg"
)

// The powerbox in the JSON API: the shell asks what a grain's request
// matches, and records the user's pick, which gives the frame its claim.
// The claim's use is the bridge's (package powerbox), not the web port's.

// revokeGrant is the Connections dialog's Disconnect.
func (h *Handler) revokeGrant(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.pb.Revoke(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	backToDialog(w, r, "connections")
}

func (a *api) powerboxOptions(w http.ResponseWriter, r *http.Request, who erg.User) {
	var q erg.PowerboxQuery
	if err := decodeBody(w, r, &q); err != nil {
		writeError(w, err)
		return
	}
	opts, err := a.pb.Options(r.Context(), who, r.PathValue("id"), q)
	reply(w, opts, err)
}

func (a *api) powerboxPick(w http.ResponseWriter, r *http.Request, who erg.User) {
	var p erg.PowerboxPick
	if err := decodeBody(w, r, &p); err != nil {
		writeError(w, err)
		return
	}
	claim, err := a.pb.Pick(r.Context(), who, r.PathValue("id"), p)
	reply(w, map[string]string{"claim": claim}, err)
}

func (a *api) grants(w http.ResponseWriter, r *http.Request, who erg.User) {
	gs, err := a.pb.List(r.Context(), who, r.PathValue("id"))
	reply(w, gs, err)
}

func (a *api) revokeGrant(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.pb.Revoke(r.Context(), who, r.PathValue("id")))
}
