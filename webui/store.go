package webui

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Listing is an app-store listing as the API shows it.
type Listing struct {
	AppID          string   `json:"app"`
	Name           string   `json:"name"`
	Summary        string   `json:"summary,omitempty"`
	Tags           []string `json:"tags,omitempty"`
	Version        int64    `json:"version"`
	DisplayVersion string   `json:"displayVersion,omitempty"`
	Package        string   `json:"package"`
	Descriptor     string   `json:"descriptor"`
	Icon           string   `json:"icon,omitempty"`
	Publisher      string   `json:"publisher"`
	// Installed is the version installed on this node, 0 if none.
	Installed int64 `json:"installed,omitempty"`
	// Score and Peers are set by search: rank, and how many publishers
	// served it.
	Score int `json:"score,omitempty"`
	Peers int `json:"peers,omitempty"`
}

// SearchReport is the answer to a store search.
type SearchReport struct {
	Results []Listing `json:"results"`
	// Problems name peers whose answers were refused, and why.
	Problems []string `json:"problems,omitempty"`
	Peers    int      `json:"peers"`
}

// FetchProgress reports a package download.
type FetchProgress struct {
	Bytes   int64         `json:"bytes"`
	Blocks  int           `json:"blocks"`
	Peers   int           `json:"peers"`
	Elapsed time.Duration `json:"elapsed"`
}

// StoreBackend is what the node provides for the app store; a Backend
// that also implements it gets the /api/store routes.
type StoreBackend interface {
	// PublishPackage stores a package's blocks, serves them, and puts the
	// signed listing, which must describe that package, in the store.
	PublishPackage(ctx context.Context, listing []byte, pkg io.Reader) (Listing, error)
	SearchStore(ctx context.Context, query string) (SearchReport, error)
	// ShowListing looks an app's newest listing up in the DHT.
	ShowListing(ctx context.Context, appID string) (Listing, error)
	// InstallFromStore fetches the newest package of an app, verifies it
	// exactly as a package file, and installs or upgrades it.
	InstallFromStore(ctx context.Context, appID string, progress func(FetchProgress)) (App, error)
	// StoreUpdates lists installed apps with a newer version in the store.
	StoreUpdates(ctx context.Context) ([]Listing, error)
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
		installWithEvents(w, r, func(ctx context.Context, emit func(installEvent)) (App, error) {
			return b.InstallFromStore(ctx, r.PathValue("id"), func(p FetchProgress) { emit(installEvent{Progress: &p}) })
		}, func(err error) error { return err })
	}))
}

// installEvent is one line of an install's event stream: progress (a
// store fetch's, or a package install's phase), then the app or an error.
type installEvent struct {
	Progress *FetchProgress `json:"progress,omitempty"`
	Step     *InstallStep   `json:"step,omitempty"`
	App      *App           `json:"app,omitempty"`
	Error    string         `json:"error,omitempty"`
	Kind     string         `json:"kind,omitempty"`
}

func errorKind(err error) string {
	switch {
	case errors.Is(err, ErrNotFound):
		return "notfound"
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	}
	return ""
}

func decodeListingParam(s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%w: no signed listing", ErrInvalid)
	}
	b, err := base64URL.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: listing: %v", ErrInvalid, err)
	}
	return b, nil
}

// PublishPackage uploads a package file and its signed listing.
func (c *Client) PublishPackage(ctx context.Context, listing []byte, pkg io.Reader) (Listing, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://erg/api/store/publish?listing="+base64URL.EncodeToString(listing), pkg)
	if err != nil {
		return Listing{}, err
	}
	req.Header.Set("Content-Type", "application/vnd.erg.package")
	resp, err := c.send(req)
	if err != nil {
		return Listing{}, err
	}
	defer resp.Body.Close()
	var l Listing
	if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
		return Listing{}, fmt.Errorf("node sent a malformed reply to the publish: %w", err)
	}
	return l, nil
}

// SearchStore searches the app store.
func (c *Client) SearchStore(ctx context.Context, query string) (SearchReport, error) {
	var rep SearchReport
	return rep, c.do(ctx, "GET", "/api/store/search?q="+url.QueryEscape(query), nil, &rep)
}

// ShowListing returns an app's newest listing.
func (c *Client) ShowListing(ctx context.Context, appID string) (Listing, error) {
	var l Listing
	return l, c.do(ctx, "GET", "/api/store/apps/"+url.PathEscape(appID), nil, &l)
}

// StoreUpdates lists installed apps the store has newer versions of.
func (c *Client) StoreUpdates(ctx context.Context) ([]Listing, error) {
	var ls []Listing
	return ls, c.do(ctx, "GET", "/api/store/updates", nil, &ls)
}

// InstallFromStore asks the node to install an app from the store,
// calling progress as the download goes.
func (c *Client) InstallFromStore(ctx context.Context, appID string, progress func(FetchProgress)) (App, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://erg/api/store/apps/"+url.PathEscape(appID)+"/install", nil)
	if err != nil {
		return App{}, err
	}
	resp, err := c.send(req)
	if err != nil {
		return App{}, err
	}
	defer resp.Body.Close()
	return readInstallEvents(resp.Body, func(ev installEvent) {
		if ev.Progress != nil && progress != nil {
			progress(*ev.Progress)
		}
	})
}

// readInstallEvents reads an install's event stream, passing progress
// events to progress, until the app or an error.
func readInstallEvents(r io.Reader, progress func(installEvent)) (App, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxAPIBody)
	for sc.Scan() {
		var ev installEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return App{}, fmt.Errorf("node sent a malformed install event: %w", err)
		}
		switch {
		case ev.App != nil:
			return *ev.App, nil
		case ev.Error != "":
			kind := map[string]error{"notfound": ErrNotFound, "invalid": ErrInvalid, "forbidden": ErrForbidden}[ev.Kind]
			if kind == nil {
				return App{}, errors.New(ev.Error)
			}
			return App{}, &remoteError{msg: ev.Error, kind: kind}
		default:
			progress(ev)
		}
	}
	if err := sc.Err(); err != nil {
		return App{}, err
	}
	return App{}, io.ErrUnexpectedEOF
}

var base64URL = base64.RawURLEncoding
