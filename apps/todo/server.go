package main

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"erg/apps/internal/appkit"
)

const (
	// maxBody bounds a POST or PATCH body.
	maxBody = 64 << 10
	// maxText bounds an item's text, in bytes.
	maxText = 1000
)

//go:embed static/index.html
var static embed.FS

// identity is who is making a request, as the node's proxy asserts it.
type identity = appkit.Identity

func identityOf(r *http.Request) identity { return appkit.IdentityOf(r) }

// An app serves one list over HTTP.
type app struct {
	store  *store
	attach *attachments
	log    *slog.Logger
	page   *template.Template
}

func newApp(s *store, at *attachments, log *slog.Logger) *app {
	return &app{
		store:  s,
		attach: at,
		log:    log,
		page:   template.Must(template.ParseFS(static, "static/index.html")),
	}
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.servePage)
	mux.HandleFunc("GET /api/items", a.listItems)
	mux.HandleFunc("POST /api/items", a.writer(a.addItem))
	mux.HandleFunc("PATCH /api/items/{id}", a.writer(a.updateItem))
	mux.HandleFunc("DELETE /api/items/{id}", a.writer(a.deleteItem))
	mux.HandleFunc("GET /api/people", a.listPeople)
	mux.HandleFunc("GET /api/attachments", a.listAttachments)
	mux.HandleFunc("POST /api/attachments", a.writer(a.linkAttachments))
	mux.HandleFunc("GET /api/attachments/files/{name}", a.downloadAttachment)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := identityOf(r)
		if !id.CanRead {
			writeError(w, http.StatusForbidden, "You do not have permission to view this list.")
			return
		}
		if err := a.store.visit(id.Username); err != nil {
			// Not worth failing the request over; the next visit retries.
			a.log.Error("remember visitor", "err", err)
		}
		mux.ServeHTTP(w, r)
	})
}

// writer refuses a request from someone without write permission.
func (a *app) writer(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !identityOf(r).CanWrite {
			writeError(w, http.StatusForbidden, "You can view this list but not change it.")
			return
		}
		h(w, r)
	}
}

func (a *app) servePage(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	err := a.page.Execute(w, struct {
		CanWrite bool
		Username string
	}{id.CanWrite, id.Username})
	if err != nil {
		a.log.Error("render page", "err", err)
	}
}

// listItems returns every item, or with ?mine=1 (or true) those assigned to
// the requester; an anonymous visitor has none.
func (a *app) listItems(w http.ResponseWriter, r *http.Request) {
	var only *string
	if m := r.URL.Query().Get("mine"); m != "" {
		mine, err := strconv.ParseBool(m)
		if err != nil {
			writeError(w, http.StatusBadRequest, "mine must be true or false.")
			return
		}
		if mine {
			username := identityOf(r).Username
			if username == "" {
				writeJSON(w, http.StatusOK, []item{})
				return
			}
			only = &username
		}
	}
	writeJSON(w, http.StatusOK, a.store.items(only))
}

func (a *app) listPeople(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.store.people())
}

func (a *app) addItem(w http.ResponseWriter, r *http.Request) {
	var c change
	if !readJSON(w, r, &c, `The body must be JSON like {"text":"…","assignee":"alice"}.`) {
		return
	}
	if c.Text == nil {
		writeError(w, http.StatusBadRequest, "An item needs a text.")
		return
	}
	text, ok := checkText(w, *c.Text)
	if !ok {
		return
	}
	assignee := ""
	if c.Assignee != nil {
		assignee = *c.Assignee
	}
	it, err := a.store.add(text, assignee, identityOf(r).Username)
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, it)
}

func (a *app) updateItem(w http.ResponseWriter, r *http.Request) {
	id, ok := itemID(w, r)
	if !ok {
		return
	}
	var c change
	if !readJSON(w, r, &c, `The body must be JSON like {"done":true}, {"text":"…"} or {"assignee":"alice"}.`) {
		return
	}
	if c.Text != nil {
		text, ok := checkText(w, *c.Text)
		if !ok {
			return
		}
		c.Text = &text
	}
	it, err := a.store.update(id, c)
	if err != nil {
		a.storeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, it)
}

func (a *app) deleteItem(w http.ResponseWriter, r *http.Request) {
	id, ok := itemID(w, r)
	if !ok {
		return
	}
	if err := a.store.remove(id); err != nil {
		a.storeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *app) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errNotFound):
		writeError(w, http.StatusNotFound, "There is no such item; someone may have deleted it.")
	case errors.Is(err, errUnknownPerson):
		writeError(w, http.StatusBadRequest, "Items can only be assigned to someone who has opened this list.")
	case errors.Is(err, errFull):
		writeError(w, http.StatusBadRequest, "The list is full; delete some items first.")
	default:
		a.log.Error("save list", "err", err)
		writeError(w, http.StatusInternalServerError, "The list could not be saved; try again.")
	}
}

func itemID(w http.ResponseWriter, r *http.Request) (int64, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		writeError(w, http.StatusBadRequest, "Item ids are positive whole numbers.")
		return 0, false
	}
	return id, true
}

// readJSON decodes the body into v, which must be exactly one JSON object
// with no unknown fields, or replies 400 and returns false.
func readJSON(w http.ResponseWriter, r *http.Request, v any, usage string) bool {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
		writeError(w, http.StatusBadRequest, "The request is too large; the limit is 64 KiB.")
		return false
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "Could not read the request body.")
		return false
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil || d.More() {
		writeError(w, http.StatusBadRequest, usage)
		return false
	}
	return true
}

// checkText trims an item's text and checks that it is valid, or replies 400.
func checkText(w http.ResponseWriter, text string) (string, bool) {
	text = strings.TrimSpace(text)
	switch {
	case text == "":
		writeError(w, http.StatusBadRequest, "An item needs a text.")
	case len(text) > maxText:
		writeError(w, http.StatusBadRequest, "An item's text is limited to 1000 bytes.")
	case !utf8.ValidString(text) || strings.IndexFunc(text, unicode.IsControl) >= 0:
		writeError(w, http.StatusBadRequest, "An item's text must be one line of plain text.")
	default:
		return text, true
	}
	return "", false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{message})
}
