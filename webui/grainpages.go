package webui

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"

	"erg"
)

// shellData is what the grain shell page shows.
type shellData struct {
	Grain     erg.Grain
	FrameURL  string
	App       erg.App
	Anonymous bool
	Shares    []erg.Share
	NewShare  *erg.Share
	Users     []erg.User
	Friends   []erg.Friend
	ShareOpen bool
	ShareErr  string
	Tokens    []erg.GrainToken // the grain's API tokens, if its app has an API
	NewToken  *erg.GrainToken
	APIOrigin string
	// Grants are the grain's powerbox connections, both ways.
	Grants          []erg.Grant
	ConnectionsOpen bool
}

func (h *Handler) openShare(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	var who *erg.User
	if a, ok := h.webActor(r); ok {
		who = &a.user
		r = withActor(r, a)
	}
	g, err := h.sh.Open(r.Context(), who, token)
	if errors.Is(err, erg.ErrUnauthorized) {
		http.Redirect(w, r, "/login?next="+url.QueryEscape("/s/"+token), http.StatusSeeOther)
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	if who != nil {
		// Signed in: the grain is now in their list, under its own address.
		http.Redirect(w, r, "/grains/"+g.ID, http.StatusSeeOther)
		return
	}
	app, _ := h.appOf(r, g.AppID)
	app.HasIcon = false // icons are for signed-in users; a visitor gets the letter tile
	h.render(w, r, http.StatusOK, "shell", pageData{Title: g.Title, Data: shellData{Grain: g, FrameURL: g.URL, App: app, Anonymous: true}})
}

func (h *Handler) appOf(r *http.Request, id string) (erg.App, error) {
	apps, err := h.in.Apps(r.Context())
	if err != nil {
		return erg.App{}, err
	}
	for _, a := range apps {
		if a.ID == id {
			return a, nil
		}
	}
	return erg.App{}, fmt.Errorf("%w: no app %q", erg.ErrNotFound, id)
}

func (h *Handler) shellPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderShell(w, r, a, r.PathValue("id"), shellData{ShareOpen: r.URL.Query().Get("share") != "", ConnectionsOpen: r.URL.Query().Get("connections") != ""})
}

// renderShell shows a grain's shell page; d says what the share dialog
// shows beyond the grain's shares (a new share or token, an error).
func (h *Handler) renderShell(w http.ResponseWriter, r *http.Request, a actor, id string, d shellData) {
	ctx := r.Context()
	g, err := h.b.OpenGrain(ctx, a.user, id)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	d.Grain, d.FrameURL, d.APIOrigin = g, g.URL, h.apiOrigin(r)
	d.ShareOpen = d.ShareOpen || d.NewShare != nil || d.NewToken != nil || d.ShareErr != ""
	d.App, _ = h.appOf(r, g.AppID)
	if d.Grants, err = h.pb.List(ctx, a.user, id); err != nil {
		h.failPage(w, r, err)
		return
	}
	if g.Mine {
		if d.Shares, err = h.sh.List(ctx, a.user, id); err != nil {
			h.failPage(w, r, err)
			return
		}
		if d.App.APIPath != "" {
			if d.Tokens, err = h.tok.List(ctx, a.user, id); err != nil {
				h.failPage(w, r, err)
				return
			}
		}
		if h.fr != nil {
			d.Friends, _ = h.fr.Friends(ctx, a.user)
		}
		if a.user.Owner {
			users, _ := h.acc.Users(ctx, a.user)
			for _, u := range users {
				if u.ID != a.user.ID {
					d.Users = append(d.Users, u)
				}
			}
		}
	}
	code := http.StatusOK
	if d.ShareErr != "" {
		code = http.StatusBadRequest
	}
	h.render(w, r, code, "shell", pageData{Title: g.Title, Data: d})
}

// grainsData is what the grains page shows.
type grainsData struct {
	Apps   []erg.App
	Mine   []erg.Grain
	Shared []erg.Grain
}

func (h *Handler) grainsPage(w http.ResponseWriter, r *http.Request, a actor) {
	h.renderGrains(w, r, a, http.StatusOK, "", "")
}

func (h *Handler) renderGrains(w http.ResponseWriter, r *http.Request, a actor, code int, notice, errMsg string) {
	gs, err := h.b.Grains(r.Context(), a.user)
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	apps, err := h.in.Apps(r.Context())
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	d := grainsData{Apps: apps}
	for _, g := range gs {
		if g.Mine {
			d.Mine = append(d.Mine, g)
		} else {
			d.Shared = append(d.Shared, g)
		}
	}
	h.render(w, r, code, "grains", pageData{Title: "Grains", Nav: "grains", Data: d, Notice: notice, Error: errMsg})
}

func (h *Handler) newGrain(w http.ResponseWriter, r *http.Request, a actor) {
	g, err := h.gr.NewGrain(r.Context(), a.user, r.PostFormValue("app"), r.PostFormValue("title"))
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/grains/"+g.ID, http.StatusSeeOther)
}

// multipartUpload reads a form whose first field is the CSRF token and
// whose next part is the file, and returns that part unread: uploads
// stream to the node instead of being parsed into memory or temp files.
func (h *Handler) multipartUpload(w http.ResponseWriter, r *http.Request, a actor, field string) (io.Reader, error) {
	if err := h.checkOrigin(r); err != nil {
		return nil, err
	}
	if r.ContentLength > h.maxUpload {
		return nil, fmt.Errorf("%w: the file is %d MiB; the limit is %d MiB", erg.ErrTooLarge, r.ContentLength>>20, h.maxUpload>>20)
	}
	if !isMultipart(r) {
		return nil, fmt.Errorf("%w: send the file as a multipart form", errUnsupportedMedia)
	}
	h.body.guard(w, r)
	r.Body = http.MaxBytesReader(w, r.Body, h.maxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", erg.ErrInvalid, err)
	}
	csrf, err := mr.NextPart()
	if err != nil || csrf.FormName() != csrfField {
		return nil, fmt.Errorf("%w: the form is out of date; reload the page and try again", erg.ErrForbidden)
	}
	tok, _ := io.ReadAll(io.LimitReader(csrf, 256))
	r.Header.Set(csrfHeader, string(tok))
	if err := h.checkCSRF(r, a); err != nil {
		return nil, err
	}
	var part *multipart.Part
	for {
		part, err = mr.NextPart()
		if err != nil {
			return nil, fmt.Errorf("%w: no file was sent", erg.ErrInvalid)
		}
		if part.FormName() == field {
			return part, nil
		}
	}
}

func (h *Handler) restoreGrain(w http.ResponseWriter, r *http.Request, a actor) {
	body, err := h.multipartUpload(w, r, a, "backup")
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	g, err := h.gr.Restore(r.Context(), a.user, body)
	if err != nil {
		err = uploadError(err, h.maxUpload)
		if errors.Is(err, erg.ErrInvalid) || errors.Is(err, erg.ErrTooLarge) {
			h.renderGrains(w, r, a, statusOf(err), "", "The backup could not be restored: "+erg.Message(err))
			return
		}
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/grains/"+g.ID, http.StatusSeeOther)
}

func (h *Handler) renameGrain(w http.ResponseWriter, r *http.Request, a actor) {
	id := r.PathValue("id")
	if err := h.gr.Rename(r.Context(), a.user, id, r.PostFormValue("title")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, localPath(r.PostFormValue("back")), http.StatusSeeOther)
}

func (h *Handler) confirmDeleteGrain(w http.ResponseWriter, r *http.Request, a actor) {
	g, err := h.b.Grain(r.Context(), a.user, r.PathValue("id"))
	if err == nil && !g.Mine {
		err = fmt.Errorf("%w: only its owner can delete a grain", erg.ErrForbidden)
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.render(w, r, http.StatusOK, "confirm", pageData{Title: "Delete " + g.Title + "?", Nav: "grains", Data: map[string]string{
		"Question": fmt.Sprintf("Delete “%s” and everything in it?", g.Title),
		"Detail":   "This cannot be undone. Download a backup first if you might want it back.",
		"Action":   "/grains/" + g.ID + "/delete", "Button": "Delete grain", "Cancel": "/grains",
	}})
}

func (h *Handler) deleteGrain(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.gr.RemoveGrain(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	http.Redirect(w, r, "/grains", http.StatusSeeOther)
}

func (h *Handler) backupGrain(w http.ResponseWriter, r *http.Request, a actor) {
	serveBackup(w, r, h.b, h.gr, h.log, a.user, r.PathValue("id"))
}

func (h *Handler) newShare(w http.ResponseWriter, r *http.Request, a actor) {
	id := r.PathValue("id")
	expires, err := parseInt64(r.PostFormValue("expires"))
	if err != nil {
		h.renderShell(w, r, a, id, shellData{ShareErr: err.Error()})
		return
	}
	req := erg.ShareRequest{
		Role: r.PostFormValue("role"), ForUser: r.PostFormValue("user"), Label: r.PostFormValue("label"),
		Anonymous: r.PostFormValue("anonymous") == "on", ExpiresIn: expires,
		Friend: r.PostFormValue("friend"), FriendUser: r.PostFormValue("friend_user"),
	}
	s, err := h.sh.New(r.Context(), a.user, id, req)
	if errors.Is(err, erg.ErrInvalid) {
		h.renderShell(w, r, a, id, shellData{ShareErr: erg.Message(err)})
		return
	}
	if err != nil {
		h.failPage(w, r, err)
		return
	}
	h.renderShell(w, r, a, id, shellData{NewShare: &s})
}

func (h *Handler) revokeShare(w http.ResponseWriter, r *http.Request, a actor) {
	if err := h.sh.Revoke(r.Context(), a.user, r.PathValue("id")); err != nil {
		h.failPage(w, r, err)
		return
	}
	backToDialog(w, r, "share")
}

// backToDialog answers a form posted from a grain's dialog (share,
// connections) by opening that dialog again on the grain named in the
// form, or the grains list when it names none.
func backToDialog(w http.ResponseWriter, r *http.Request, dialog string) {
	grain := r.PostFormValue("grain")
	if !validGrainID(grain) {
		http.Redirect(w, r, "/grains", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/grains/"+grain+"?"+dialog+"=1", http.StatusSeeOther)
}
