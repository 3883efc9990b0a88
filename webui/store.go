package webui

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"

	"erg"
)

// StoreBackend is what the node provides for the app store; a Backend
// that also implements it gets the /api/store routes.
type StoreBackend interface {
	// PublishPackage stores a package's blocks, serves them, and puts the
	// signed listing, which must describe that package, in the store.
	PublishPackage(ctx context.Context, listing []byte, pkg io.Reader) (erg.Listing, error)
	SearchStore(ctx context.Context, query string) (erg.SearchReport, error)
	// ShowListing looks an app's newest listing up in the DHT.
	ShowListing(ctx context.Context, appID string) (erg.Listing, error)
	// InstallFromStore fetches the newest package of an app, verifies it
	// as strictly as a package file, and installs or upgrades it,
	// reporting each step to progress (which may be nil).
	InstallFromStore(ctx context.Context, appID string, progress erg.InstallProgress) (erg.App, error)
	// StoreUpdates lists installed apps with a newer version in the store.
	StoreUpdates(ctx context.Context) ([]erg.Listing, error)
}

// registerStore adds the store routes; each needs a signed-in actor, and
// the owner for anything that changes the node.
func (a *api) registerStore(mux *http.ServeMux, b StoreBackend) {
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
		l, err := b.PublishPackage(r.Context(), rec, body)
		reply(w, l, err)
	}))
	mux.HandleFunc("GET /api/store/search", guard(false, func(w http.ResponseWriter, r *http.Request) {
		rep, err := b.SearchStore(r.Context(), r.URL.Query().Get("q"))
		reply(w, rep, err)
	}))
	mux.HandleFunc("GET /api/store/apps/{id}", guard(false, func(w http.ResponseWriter, r *http.Request) {
		l, err := b.ShowListing(r.Context(), r.PathValue("id"))
		reply(w, l, err)
	}))
	mux.HandleFunc("GET /api/store/updates", guard(false, func(w http.ResponseWriter, r *http.Request) {
		ls, err := b.StoreUpdates(r.Context())
		reply(w, ls, err)
	}))
	// Install streams one JSON object per line: progress now and then,
	// and at the end the app or an error.
	mux.HandleFunc("POST /api/store/apps/{id}/install", guard(true, func(w http.ResponseWriter, r *http.Request) {
		installWithEvents(w, r, func(ctx context.Context, progress erg.InstallProgress) (erg.App, error) {
			return b.InstallFromStore(ctx, r.PathValue("id"), progress)
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
