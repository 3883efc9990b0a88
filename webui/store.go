package webui

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"

	"erg"
	"erg/store"
)

// registerStore adds the store routes; each needs a signed-in actor, and
// the owner for anything that changes the node.
func (a *api) registerStore(mux *http.ServeMux, b *store.Service) {
	guard := a.guard
	mux.HandleFunc("POST /api/store/publish", guard(true, func(w http.ResponseWriter, r *http.Request) {
		rec, err := decodeListingParam(r.URL.Query().Get("listing"))
		if err != nil {
			writeError(w, err)
			return
		}
		body, err := a.upload(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		l, err := b.Publish(r.Context(), rec, body)
		reply(w, l, err)
	}))
	mux.HandleFunc("GET /api/store/search", guard(false, func(w http.ResponseWriter, r *http.Request) {
		rep, err := b.Search(r.Context(), r.URL.Query().Get("q"))
		reply(w, rep, err)
	}))
	mux.HandleFunc("GET /api/store/apps/{id}", guard(false, func(w http.ResponseWriter, r *http.Request) {
		l, err := b.Listing(r.Context(), r.PathValue("id"))
		reply(w, l, err)
	}))
	mux.HandleFunc("GET /api/store/updates", guard(false, func(w http.ResponseWriter, r *http.Request) {
		ls, err := b.Updates(r.Context())
		reply(w, ls, err)
	}))
	// Install streams one JSON object per line: progress now and then,
	// and at the end the app or an error.
	mux.HandleFunc("POST /api/store/apps/{id}/install", guard(true, func(w http.ResponseWriter, r *http.Request) {
		installWithEvents(w, r, func(ctx context.Context, progress erg.InstallProgress) (erg.App, error) {
			return b.Install(ctx, r.PathValue("id"), progress)
		}, func(err error) error { return err })
	}))
}

func decodeListingParam(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: no signed listing", erg.ErrInvalid)
	}
	b, err := base64URL.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: listing: %v", erg.ErrInvalid, err)
	}
	return b, nil
}

var base64URL = base64.RawURLEncoding
