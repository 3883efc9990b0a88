package main

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"erg/apps/internal/appkit"
)

// maxBody bounds a PUT body and a websocket message.
const maxBody = 1 << 20

const (
	writeTimeout = 10 * time.Second
	pingInterval = 30 * time.Second
)

//go:embed static/index.html
var static embed.FS

// identity is who is making a request, as the node's proxy asserts it.
type identity = appkit.Identity

func identityOf(r *http.Request) identity { return appkit.IdentityOf(r) }

// An app serves one note over HTTP and websockets.
type app struct {
	store *store
	hub   *hub
	log   *slog.Logger
	page  *template.Template
}

func newApp(s *store, log *slog.Logger) *app {
	return &app{
		store: s,
		hub:   newHub(),
		log:   log,
		page:  template.Must(template.ParseFS(static, "static/index.html")),
	}
}

func (a *app) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", a.servePage)
	mux.HandleFunc("GET /api/note", a.getNote)
	mux.HandleFunc("PUT /api/note", a.putNote)
	mux.HandleFunc("GET /ws", a.serveSocket)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !identityOf(r).CanRead {
			writeError(w, http.StatusForbidden, "You do not have permission to view this note.")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// close closes every websocket and waits for them to finish.
func (a *app) close(ctx context.Context) error { return a.hub.close(ctx) }

// save applies an edit by id and tells every socket about the new note.
func (a *app) save(id identity, e edit) (note, error) {
	n, err := a.store.update(e, id.Username)
	if err != nil {
		return n, err
	}
	a.hub.notify()
	return n, nil
}

func (a *app) servePage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	err := a.page.Execute(w, struct{ CanWrite bool }{identityOf(r).CanWrite})
	if err != nil {
		a.log.Error("render page", "err", err)
	}
}

func (a *app) getNote(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.store.get())
}

func (a *app) putNote(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r)
	if !id.CanWrite {
		writeError(w, http.StatusForbidden, "You can view this note but not edit it.")
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if _, tooBig := errors.AsType[*http.MaxBytesError](err); tooBig {
		writeError(w, http.StatusBadRequest, "The note is too large; the limit is 1 MiB.")
		return
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "Could not read the request body.")
		return
	}
	var e edit
	if err := json.Unmarshal(b, &e); err != nil {
		writeError(w, http.StatusBadRequest, `The body must be JSON like {"title":"…","text":"…","baseVersion":3}.`)
		return
	}
	n, err := a.save(id, e)
	switch {
	case errors.Is(err, errStale):
		writeJSON(w, http.StatusConflict, n)
	case err != nil:
		a.log.Error("save note", "err", err)
		writeError(w, http.StatusInternalServerError, "The note could not be saved; try again.")
	default:
		writeJSON(w, http.StatusOK, n)
	}
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

// Messages on the websocket. The server sends "note" on connect, whenever
// the note changes, and in reply to a saved edit; it sends "error" in reply
// to an edit that failed. A client with write permission sends "edit".
type (
	clientMessage struct {
		Type string `json:"type"`
		edit
	}
	noteMessage struct {
		Type string `json:"type"`
		note
	}
	errorMessage struct {
		Type    string `json:"type"`
		Status  int    `json:"status"` // the HTTP status a PUT would get
		Message string `json:"message"`
		Note    *note  `json:"note,omitempty"` // the current note, on a 409
	}
)

func (a *app) serveSocket(w http.ResponseWriter, r *http.Request) {
	id := identityOf(r)
	opts := &websocket.AcceptOptions{}
	// The proxy may rewrite Host; the browser's Origin then matches the
	// host it forwarded for. Browsers cannot set this header themselves.
	if h := r.Header.Get("X-Forwarded-Host"); h != "" {
		opts.OriginPatterns = []string{h}
	}
	c, err := websocket.Accept(w, r, opts)
	if err != nil {
		return // Accept has replied
	}
	defer c.CloseNow()
	c.SetReadLimit(maxBody)

	changed, ok := a.hub.join()
	if !ok {
		c.Close(websocket.StatusGoingAway, "the note is shutting down")
		return
	}
	defer a.hub.leave(changed)

	// The request's context is not usable after the connection is hijacked.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		defer cancel()
		a.readEdits(ctx, c, id)
	}()
	a.pushNotes(ctx, c, changed)
	cancel()
	<-readDone
}

// pushNotes sends the note now and after every change, until ctx is done,
// a write fails, or the hub closes.
func (a *app) pushNotes(ctx context.Context, c *websocket.Conn, changed <-chan struct{}) {
	if send(ctx, c, noteMessage{Type: "note", note: a.store.get()}) != nil {
		return
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-changed:
			if send(ctx, c, noteMessage{Type: "note", note: a.store.get()}) != nil {
				return
			}
		case <-ping.C:
			// Finds peers that vanished without closing, and keeps
			// idle connections open through the proxy.
			pctx, cancel := context.WithTimeout(ctx, writeTimeout)
			err := c.Ping(pctx)
			cancel()
			if err != nil {
				return
			}
		case <-a.hub.stopping():
			c.Close(websocket.StatusGoingAway, "the note is shutting down")
			return
		case <-ctx.Done():
			return
		}
	}
}

// readEdits applies the edits a client sends until the connection fails.
func (a *app) readEdits(ctx context.Context, c *websocket.Conn, id identity) {
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if send(ctx, c, a.applyMessage(id, b)) != nil {
			return
		}
	}
}

// applyMessage handles one message from a client and returns the reply to
// send to that client: the saved note or an error. Every edit gets exactly
// one reply, so a client can tell when its edit is done even if the pushes
// to all sockets skip the version it saved.
func (a *app) applyMessage(id identity, b []byte) any {
	var m clientMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return errorMessage{Type: "error", Status: http.StatusBadRequest, Message: "Messages must be JSON objects."}
	}
	if m.Type != "edit" {
		return errorMessage{Type: "error", Status: http.StatusBadRequest, Message: `Unknown message type; send {"type":"edit",…}.`}
	}
	if !id.CanWrite {
		return errorMessage{Type: "error", Status: http.StatusForbidden, Message: "You can view this note but not edit it."}
	}
	n, err := a.save(id, m.edit)
	switch {
	case errors.Is(err, errStale):
		return errorMessage{Type: "error", Status: http.StatusConflict, Message: "Someone else changed the note first.", Note: &n}
	case err != nil:
		a.log.Error("save note", "err", err)
		return errorMessage{Type: "error", Status: http.StatusInternalServerError, Message: "The note could not be saved; try again."}
	}
	return noteMessage{Type: "note", note: n}
}

func send(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	return c.Write(ctx, websocket.MessageText, b)
}
