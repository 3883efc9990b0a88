package webui

import (
	"errors"
	"net/http"

	"erg"
)

// Grains' API tokens (package apitokens) in the JSON API and in the share
// dialog; the requests that use them are the API origin's (apiorigin.go).

func (a *api) grainTokens(w http.ResponseWriter, r *http.Request, who erg.User) {
	t, err := a.tok.List(r.Context(), who, r.PathValue("id"))
	reply(w, t, err)
}

func (a *api) newGrainToken(w http.ResponseWriter, r *http.Request, who erg.User) {
	var req erg.GrainTokenRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	t, err := a.tok.New(r.Context(), who, r.PathValue("id"), req)
	if err == nil {
		w.WriteHeader(http.StatusCreated)
	}
	reply(w, t, err)
}

func (a *api) revokeGrainToken(w http.ResponseWriter, r *http.Request, who erg.User) {
	reply(w, struct{}{}, a.tok.Revoke(r.Context(), who, r.PathValue("id")))
}

func (h *Handler) newGrainToken(w http.ResponseWriter, r *http.Request, a actor) {
	id := r.PathValue("id")
	expires, err := parseInt64(r.PostFormValue("expires"))
	if err != nil {
		h.renderShell(w, r, a, id, shellData{ShareErr: erg.Message(err)})
		return
	}
	req := erg.GrainTokenRequest{Role: r.PostFormValue("role"), Label: r.PostFormValue("label"),
		ForUser: r.PostFormValue("user"), ExpiresIn: expires}
	t, err := h.tok.New(r.Context(), a.user, id, req)
	if errors.Is(err, erg.ErrInvalid) {
		h.renderShell(w, r, a, id, shellData{ShareErr: erg.Message(err)})
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.renderShell(w, r, a, id, shellData{NewToken: &t})
}

func (h *Handler) revokeGrainToken(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.tok.Revoke(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	backToDialog(w, r, "share")
}
