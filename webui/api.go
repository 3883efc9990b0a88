package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
)

// maxAPIBody bounds what an API request may send; every API body is small.
const maxAPIBody = 1 << 20

// APIHandler serves the JSON API. It trusts its caller to be the node's
// owner, so it must only be served where only the owner can reach it (the
// data dir's owner-only unix socket).
func APIHandler(b Backend, log *slog.Logger) http.Handler {
	a := &api{b: b, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/status", a.status)
	mux.HandleFunc("GET /api/apps", a.apps)
	mux.HandleFunc("POST /api/apps", a.installPackage)
	mux.HandleFunc("GET /api/grains", a.grains)
	mux.HandleFunc("POST /api/grains", a.newGrain)
	mux.HandleFunc("POST /api/grains/{id}/open", a.openGrain)
	mux.HandleFunc("DELETE /api/grains/{id}", a.removeGrain)
	mux.HandleFunc("GET /api/grains/{id}/log", a.grainLog)
	if sb, ok := b.(StoreBackend); ok {
		registerStore(mux, sb)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no API route %s %s", ErrNotFound, r.Method, r.URL.Path))
	})
	return mux
}

type api struct {
	b   Backend
	log *slog.Logger
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	s, err := a.b.Status(r.Context())
	reply(w, s, err)
}

func (a *api) apps(w http.ResponseWriter, r *http.Request) {
	apps, err := a.b.Apps(r.Context())
	reply(w, apps, err)
}

// maxPackageUpload bounds an uploaded package file.
const maxPackageUpload = 1 << 30

func (a *api) installPackage(w http.ResponseWriter, r *http.Request) {
	app, err := a.b.InstallPackage(r.Context(), http.MaxBytesReader(w, r.Body, maxPackageUpload))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		err = fmt.Errorf("%w: package is larger than %d MiB", ErrInvalid, maxPackageUpload>>20)
	}
	if err == nil {
		w.WriteHeader(http.StatusCreated)
	}
	reply(w, app, err)
}

func (a *api) grains(w http.ResponseWriter, r *http.Request) {
	gs, err := a.b.Grains(r.Context())
	reply(w, gs, err)
}

// NewGrainRequest is the body of POST /api/grains.
type NewGrainRequest struct {
	App   string `json:"app"`
	Title string `json:"title"`
}

func (a *api) newGrain(w http.ResponseWriter, r *http.Request) {
	var req NewGrainRequest
	if err := decodeBody(w, r, &req); err != nil {
		writeError(w, err)
		return
	}
	g, err := a.b.NewGrain(r.Context(), req.App, req.Title)
	if err == nil {
		w.WriteHeader(http.StatusCreated)
	}
	reply(w, g, err)
}

func (a *api) openGrain(w http.ResponseWriter, r *http.Request) {
	g, err := a.b.OpenGrain(r.Context(), r.PathValue("id"))
	reply(w, g, err)
}

func (a *api) removeGrain(w http.ResponseWriter, r *http.Request) {
	err := a.b.RemoveGrain(r.Context(), r.PathValue("id"))
	reply(w, struct{}{}, err)
}

func (a *api) grainLog(w http.ResponseWriter, r *http.Request) {
	log, err := a.b.GrainLog(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(log)
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", ErrInvalid, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("%w: request body: trailing data", ErrInvalid)
	}
	return nil
}

// apiError is the body of every failed API call.
type apiError struct {
	Error string `json:"error"`
}

func reply(w http.ResponseWriter, v any, err error) {
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, ErrForbidden):
		code = http.StatusForbidden
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(apiError{Error: err.Error()})
}
