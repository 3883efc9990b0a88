package webui

import (
	"errors"
	"fmt"
	"net/http"

	"erg"
)

func (h *Handler) appsPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderApps(w, r, http.StatusOK, "", "")
}

func (h *Handler) renderApps(w http.ResponseWriter, r *http.Request, code int, notice, errMsg string) {
	apps, err := h.in.Apps(r.Context())
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	if notice == "" {
		notice = installedNotice(r, apps)
	}
	h.render(w, r, code, "apps", pageData{Title: "Apps", Nav: "apps", Data: map[string]any{"Apps": apps, "MaxUpload": h.maxUpload,
		"Updates": h.appUpdates(r, apps)}, Notice: notice, Error: errMsg})
}

func (h *Handler) installApp(w http.ResponseWriter, r *http.Request, a actor) {
	if err := ownerOnly(a.user); err != nil {
		h.failPage(w, r, err)
		return
	}
	body, err := h.multipartUpload(w, r, a, "package")
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	app, err := h.in.Upload(r.Context(), body, nil)
	if err != nil {
		err = uploadError(err, h.maxUpload)
		if errors.Is(err, erg.ErrInvalid) || errors.Is(err, erg.ErrTooLarge) {
			h.renderApps(w, r, statusOf(err), "", "The package was not installed: "+erg.Message(err))
			return
		}
		h.failPage(w, r, err)
		return
	}
	h.renderApps(w, r, http.StatusCreated, fmt.Sprintf("Installed %s %s.", app.Name, app.DisplayVersion), "")
}

func (h *Handler) removeApp(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.in.Remove(r.Context(), a.user, r.PathValue("id")); err != nil {
		if errors.Is(err, erg.ErrInvalid) {
			h.renderApps(w, r, http.StatusBadRequest, "", erg.Message(err))
			return
		}
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/apps", http.StatusSeeOther)
}

func (h *Handler) appIcon(w http.ResponseWriter, r *http.Request, a actor) {
	data, ctype, err := h.in.Icon(r.Context(), r.PathValue("id"))
	if err != nil {
		http.Error(w, "No icon.", statusOf(err))
		return
	}
	// An SVG icon is the app's content: it must not run as the shell.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Cache-Control", "private, max-age=3600")
	w.Write(data)
}
